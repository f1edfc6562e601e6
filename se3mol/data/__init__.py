"""Data sets: QM9 from qm9pack and its standard split; the charged-particle N-body benchmark."""

from se3mol.data.nbody import NBodyBatch, NBodyConfig, NBodyData, load_nbody
from se3mol.data.qm9 import QM9, SPLIT_SIZES, TARGET_NAMES, attach_bonds, load_qm9, standard_split

__all__ = [
    "QM9", "attach_bonds", "SPLIT_SIZES", "TARGET_NAMES", "load_qm9", "standard_split",
    "NBodyBatch", "NBodyConfig", "NBodyData", "load_nbody",
]
