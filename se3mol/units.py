"""Units of the quantities se3mol reports, and conversions built on :mod:`ase.units`.

Lengths inside se3mol are always Angstrom. Energies reported to users are meV.
"""

from __future__ import annotations

# ase.units' values (its default, CODATA 2014), written out for a machine without ASE (an accelerator node that
# only trains); tests/unit/test_units.py holds them equal to ASE's.
ASE_BOHR: float = 0.5291772105638411
ASE_DEBYE: float = 0.20819433442462576

HARTREE_TO_MEV: float = 27211.386  # ARCHITECTURE.md; ase.units.Hartree * 1000 agrees to 1e-6 relative
try:
    from ase import units as _ase

    BOHR_TO_ANGSTROM: float = float(_ase.Bohr)
    DEBYE_TO_E_ANGSTROM: float = float(_ase.Debye)  # 1 D in e*Angstrom
except ImportError:  # pragma: no cover - exercised by the light-import test in a subprocess
    BOHR_TO_ANGSTROM = ASE_BOHR
    DEBYE_TO_E_ANGSTROM = ASE_DEBYE


def hartree_to_mev(x):
    """Convert Hartree to meV (works on floats, numpy arrays and tensors)."""
    return x * HARTREE_TO_MEV


def mev_to_hartree(x):
    """Convert meV to Hartree."""
    return x / HARTREE_TO_MEV
