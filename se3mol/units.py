"""Units of the quantities se3mol reports, and conversions (the values of :mod:`ase.units`).

Lengths inside se3mol are always Angstrom. Energies reported to users are meV.
"""

from __future__ import annotations

HARTREE_TO_MEV: float = 27211.386  # ARCHITECTURE.md; ase.units.Hartree * 1000 agrees to 1e-6 relative
# ase.units' values (its default, CODATA 2014), written out so that training imports where ASE is not installed
# (an accelerator node); tests/unit/test_light_imports.py holds them equal to ASE's.
BOHR_TO_ANGSTROM: float = 0.5291772105638411
DEBYE_TO_E_ANGSTROM: float = 0.20819433442462576  # 1 D in e*Angstrom


def hartree_to_mev(x):
    """Convert Hartree to meV (works on floats, numpy arrays and tensors)."""
    return x * HARTREE_TO_MEV


def mev_to_hartree(x):
    """Convert meV to Hartree."""
    return x / HARTREE_TO_MEV
