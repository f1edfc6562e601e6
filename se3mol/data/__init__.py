"""Data sets: QM9 from qm9pack, and the standard split."""

from se3mol.data.qm9 import QM9, SPLIT_SIZES, TARGET_NAMES, attach_bonds, load_qm9, standard_split

__all__ = ["QM9", "attach_bonds", "SPLIT_SIZES", "TARGET_NAMES", "load_qm9", "standard_split"]
