"""Geometry checks of finished conformers: bonds torn apart and atoms on top of each other.

Both are physical impossibilities that a sampler can still produce, so ``se3mol conformers`` checks every
conformer, whatever the method, and names the offending atoms in the SD record (``stretched_bonds``,
``clashes``). The score model sees only bonds and pairs up to 3 bonds apart, so atoms further apart in a
molecule larger than its training molecules can end up overlapping: that is what the clash check catches.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

# A bond is stretched beyond the sum of the atoms' covalent radii plus this (Angstrom; OpenBabel's bond
# perception tolerance): no conformer of a molecule with that bond has atoms so far apart.
BOND_TOLERANCE = 0.45


def stretched_bonds(pos: np.ndarray, z: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Which bonds ``[B,2]`` of each conformer of ``pos [K,N,3]`` (atomic numbers ``z [N]``) are longer than the
    atoms' covalent radii (RDKit) plus ``BOND_TOLERANCE`` ``[K,B]`` (bool): a torn geometry."""
    pos = np.asarray(pos, dtype=np.float64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    table = Chem.GetPeriodicTable()
    radius = np.array([table.GetRcovalent(int(e)) for e in z])
    limit = radius[bonds[:, 0]] + radius[bonds[:, 1]] + BOND_TOLERANCE
    return np.linalg.norm(pos[:, bonds[:, 0]] - pos[:, bonds[:, 1]], axis=-1) > limit


# Atoms 3 or more bonds apart closer than this fraction of the sum of their van der Waals radii (RDKit)
# overlap. The closest such pair in 3,000 QM9 test molecules' DFT geometries is at 0.565, an N...H hydrogen
# bond (benchmarks/conformers/clash_rule.py); ETKDG's conformers in
# benchmarks/conformers/conformers_beyond_qm9.py keep 0.70.
CLASH_FACTOR = 0.5


def nonbonded_pairs(mol: Chem.Mol, min_bonds: int = 3) -> np.ndarray:
    """Atom pairs ``[P,2]`` (``i < j``) of ``mol`` at least ``min_bonds`` bonds apart (1-4 pairs and beyond)."""
    d = Chem.GetDistanceMatrix(mol)
    i, j = np.nonzero(np.triu(d >= min_bonds, 1))
    return np.stack([i, j], axis=1).astype(np.int64).reshape(-1, 2)


def clashes(pos: np.ndarray, z: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Which atom pairs ``[P,2]`` (from :func:`nonbonded_pairs`) of each conformer of ``pos [K,N,3]`` (atomic
    numbers ``z [N]``) are closer than ``CLASH_FACTOR`` times their van der Waals radii's sum ``[K,P]`` (bool)."""
    pos = np.asarray(pos, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    table = Chem.GetPeriodicTable()
    radius = np.array([table.GetRvdw(int(e)) for e in z])
    limit = CLASH_FACTOR * (radius[pairs[:, 0]] + radius[pairs[:, 1]])
    return np.linalg.norm(pos[:, pairs[:, 0]] - pos[:, pairs[:, 1]], axis=-1) < limit
