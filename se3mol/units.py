"""Units of the quantities se3mol reports, and conversions built on :mod:`ase.units`.

Lengths inside se3mol are always Angstrom. Energies reported to users are meV.
"""

from __future__ import annotations

from ase import units as _ase

HARTREE_TO_MEV: float = 27211.386  # ARCHITECTURE.md; ase.units.Hartree * 1000 agrees to 1e-6 relative
BOHR_TO_ANGSTROM: float = float(_ase.Bohr)
DEBYE_TO_E_ANGSTROM: float = float(_ase.Debye)  # 1 D in e*Angstrom


def hartree_to_mev(x):
    """Convert Hartree to meV (works on floats, numpy arrays and tensors)."""
    return x * HARTREE_TO_MEV


def mev_to_hartree(x):
    """Convert meV to Hartree."""
    return x / HARTREE_TO_MEV
