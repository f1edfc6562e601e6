"""COV/MAT metrics on hand-checkable cases: identical, uniformly scaled and symmetry-swapped conformers."""

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign
from rdkit.Geometry import Point3D

from se3mol.conformers.metrics import (
    coverage_matching,
    evaluate_conformer_files,
    evaluate_conformer_sets,
    heavy_atom_rmsd_matrix,
)
from se3mol.writers import SDFWriter


def _embedded(smiles: str, seed: int = 7) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


def _with_positions(mol: Chem.Mol, pos: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, (x, y, z) in enumerate(pos.tolist()):
        conf.SetAtomPosition(i, Point3D(x, y, z))
    return out


def _heavy_positions(mol: Chem.Mol) -> np.ndarray:
    pos = mol.GetConformer().GetPositions()
    return pos[[a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]]


def test_identical_conformers_have_zero_rmsd_and_full_coverage():
    mol = _embedded("CC(O)CN")
    d, _ = heavy_atom_rmsd_matrix([mol, mol], [mol])
    assert d.shape == (2, 1)
    np.testing.assert_allclose(d, 0.0, atol=1e-6)
    assert coverage_matching(d, 0.5) == {"cov_r": 1.0, "mat_r": pytest.approx(0.0, abs=1e-6),
                                         "cov_p": 1.0, "mat_p": pytest.approx(0.0, abs=1e-6)}


def test_scaled_conformer_has_the_rmsd_worked_out_by_hand():
    # For heavy-atom positions X centred at c, the best superposition of c + (1+s)(X-c) on X is the identity
    # (X^T (1+s) X is symmetric positive definite), so RMSD = s * sqrt(mean |x - c|^2). The graph of
    # 1-aminopropan-2-ol has no symmetry, so no other atom mapping competes.
    mol = _embedded("CC(O)CN")
    heavy = _heavy_positions(mol)
    c = heavy.mean(axis=0)
    rg = np.sqrt(((heavy - c) ** 2).sum(axis=1).mean())
    all_pos = mol.GetConformer().GetPositions()
    scaled = [_with_positions(mol, c + (1 + s) * (all_pos - c)) for s in (0.1, 0.5)]
    d, n_maps = heavy_atom_rmsd_matrix(scaled + [mol], [mol])
    assert n_maps == 1
    np.testing.assert_allclose(d[:, 0], [0.1 * rg, 0.5 * rg, 0.0], atol=1e-6)
    # Threshold between the two scaled copies: the reference is covered, 2 of 3 generated are precise.
    thr = 0.3 * rg
    m = coverage_matching(d, thr)
    assert m["cov_r"] == 1.0 and m["mat_r"] == pytest.approx(0.0, abs=1e-6)
    assert m["cov_p"] == pytest.approx(2 / 3) and m["mat_p"] == pytest.approx(0.6 * rg / 3, abs=1e-6)
    # Roles swapped: one generated, two references (one far): recall halves, precision is full.
    d2, _ = heavy_atom_rmsd_matrix([mol], [mol, scaled[1]])
    m2 = coverage_matching(d2, thr)
    assert m2["cov_r"] == 0.5 and m2["mat_r"] == pytest.approx(0.25 * rg, abs=1e-6)
    assert m2["cov_p"] == 1.0 and m2["mat_p"] == pytest.approx(0.0, abs=1e-6)


def test_symmetry_swap_is_large_naively_but_zero_with_best_rmsd():
    # Swapping the coordinates of two methyl carbons of tert-butanol gives the mirror image of the heavy-atom
    # frame under the identity mapping (large naive RMSD); the swap is a graph automorphism, so the best RMSD is 0.
    mol = Chem.RemoveHs(_embedded("CC(C)(C)O"))
    pos = mol.GetConformer().GetPositions()
    methyls = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 6 and a.GetDegree() == 1]
    i, j = methyls[:2]
    swapped_pos = pos.copy()
    swapped_pos[[i, j]] = pos[[j, i]]
    swapped = _with_positions(mol, swapped_pos)
    naive = rdMolAlign.AlignMol(Chem.Mol(swapped), mol, atomMap=[(k, k) for k in range(mol.GetNumAtoms())])
    assert naive > 0.5
    d, n_maps = heavy_atom_rmsd_matrix([swapped], [mol])
    assert n_maps == 6  # 3! permutations of the methyls
    assert d[0, 0] < 1e-6


def test_atom_order_does_not_matter():
    mol = _embedded("OCC(N)C=O")
    perm = list(np.random.default_rng(0).permutation(mol.GetNumAtoms()))
    renumbered = Chem.RenumberAtoms(mol, [int(p) for p in perm])
    d, _ = heavy_atom_rmsd_matrix([renumbered], [mol])
    assert d[0, 0] < 1e-6


def test_a_hydrogen_that_defines_double_bond_stereo_is_not_a_heavy_atom():
    # RDKit's RemoveHs keeps "[H]/N=C" hydrogens; they must not be counted or matched as heavy atoms
    with_stereo = _embedded("[H]/N=C1\\OC(C)CO1")
    plain = _embedded("N=C1OC(C)CO1")
    d, _ = heavy_atom_rmsd_matrix([with_stereo], [plain])
    assert np.isfinite(d).all() and d[0, 0] < 1.0


def test_molecules_missing_on_either_side_are_reported_not_dropped():
    a, b, c = _embedded("CCO"), _embedded("CCN"), _embedded("CCC")
    result = evaluate_conformer_sets({"CCO": [a], "CCC": [c]}, {"CCO": [a], "CCN": [b]})
    status = {m.key: m.status for m in result.molecules}
    assert status == {"CCO": "ok", "CCN": "no generated conformers", "CCC": "no reference conformers"}
    assert result.n_evaluated == 1 and result.n_missing_generated == 1 and result.n_missing_reference == 1
    assert not result.complete
    assert result.summary["cov_r"]["mean"] == 1.0  # summaries are over the evaluated molecule


def test_mismatched_graphs_are_an_error_row():
    result = evaluate_conformer_sets({"x": [_embedded("CCO")]}, {"x": [_embedded("CCN")]})
    assert result.molecules[0].status == "error" and "graph" in result.molecules[0].error


def test_files_group_by_canonical_smiles_and_report_unreadable_records(tmp_path):
    ethanol, propanol = _embedded("OCC"), _embedded("CCCO")
    ethanol2 = _embedded("C(O)C", seed=3)  # same molecule, other SMILES, other conformer
    gen, ref = tmp_path / "gen.sdf", tmp_path / "ref.sdf"
    with SDFWriter(gen) as w:
        for m in (ethanol, propanol, ethanol2):
            w.write(m, name="g")
    with SDFWriter(ref) as w:
        w.write(ethanol, name="r")
    with open(ref, "a") as fh:
        fh.write("broken\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\nnot an atom line\nM  END\n$$$$\n")
    result = evaluate_conformer_files(gen, ref, threshold=0.5)
    rows = {m.smiles: m for m in result.molecules}
    assert rows["CCO"].n_generated == 2 and rows["CCO"].n_reference == 1
    assert rows["CCO"].cov_r == 1.0 and rows["CCO"].mat_r == pytest.approx(0.0, abs=1e-6)
    assert rows["CCCO"].status == "no reference conformers"
    assert len(result.read_errors) == 1 and "record 2" in result.read_errors[0]


def test_mmff_relaxed_conformers_still_match_their_molecule():
    # RDKit's MMFF set-up rewrites aromaticity flags in place; relax_mmff must leave the chemistry alone,
    # or relaxed conformers of aromatic molecules no longer match the same molecule from elsewhere.
    from se3mol.conformers import relax_mmff

    # a 1,3-oxazin-6-one from QM9: RDKit calls the ring non-aromatic, MMFF's aromaticity model aromatic
    ref = _embedded("NC1=NC=CC(=O)O1")
    mol = _embedded("NC1=NC=CC(=O)O1", seed=11)
    flags = [b.GetIsAromatic() for b in mol.GetBonds()]
    before = mol.GetConformer().GetPositions()
    (outcome,) = relax_mmff(mol)
    assert outcome.converged and outcome.energy_after < outcome.energy_before
    assert [b.GetIsAromatic() for b in mol.GetBonds()] == flags
    assert not np.allclose(mol.GetConformer().GetPositions(), before)
    d, _ = heavy_atom_rmsd_matrix([mol], [ref])
    assert d[0, 0] < 0.5
