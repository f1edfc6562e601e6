"""Geometry checks of finished conformers (se3mol.conformers.geometry): torn bonds and overlapping atoms."""

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from se3mol.conformers.geometry import CLASH_FACTOR, clashes, nonbonded_pairs


def _embedded(smiles: str, n: int = 3):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    ids = AllChem.EmbedMultipleConfs(mol, n, randomSeed=7)
    return mol, np.stack([mol.GetConformer(i).GetPositions() for i in ids])


def test_nonbonded_pairs_are_the_pairs_three_or_more_bonds_apart():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCO"))
    d = Chem.GetDistanceMatrix(mol)
    pairs = nonbonded_pairs(mol)
    assert len(pairs) == int(np.triu(d >= 3, 1).sum()) > 0
    assert all(i < j and d[i, j] >= 3 for i, j in pairs)
    assert len(nonbonded_pairs(Chem.AddHs(Chem.MolFromSmiles("C")))) == 0  # methane: every pair 1 or 2 bonds apart


def test_distance_geometry_conformers_do_not_clash_and_overlapping_atoms_do():
    mol, xyz = _embedded("CCCCCCO")
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    pairs = nonbonded_pairs(mol)
    assert not clashes(xyz, z, pairs).any()
    # put the hydroxyl O onto the first carbon (6 bonds apart): that pair, and no other, clashes
    bad = xyz.copy()
    c, o = 0, next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "O")
    bad[1, o] = bad[1, c] + np.array([0.3, 0.0, 0.0])
    flagged = clashes(bad, z, pairs)
    assert not flagged[0].any() and not flagged[2].any()
    assert {tuple(sorted(p)) for p in pairs[flagged[1]]} >= {(c, o)}
    # the rule is a fraction of the van der Waals sum: at exactly that distance the pair does not clash
    table = Chem.GetPeriodicTable()
    limit = CLASH_FACTOR * (table.GetRvdw(6) + table.GetRvdw(8))
    bad[1, o] = bad[1, c] + np.array([limit + 1e-6, 0.0, 0.0])
    k = int(np.flatnonzero((pairs == [c, o]).all(1))[0])
    assert not clashes(bad, z, pairs)[1, k]
