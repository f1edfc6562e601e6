"""The drug-like ensemble builder: stereo fixing, ensembles, one file per molecule, resume and recorded failures."""

import json

import numpy as np
import pytest
from rdkit import Chem

from se3mol.conformers.data import conformer_dataset
from se3mol.conformers.drugs import BuildSettings, build, build_ensemble, export, fix_stereo, read_ensembles, summary
from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers

pytest.importorskip("tblite")

SMALL = BuildSettings(pool=6, keep=3, window=6.0, rmsd=0.5)


def test_fix_stereo_sets_only_what_is_open():
    assert fix_stereo("CC=CC") in ("C/C=C/C", "C/C=C\\C")
    assert "@" in fix_stereo("CC(F)Cl")
    assert fix_stereo("C[C@H](F)Cl") == Chem.MolToSmiles(Chem.MolFromSmiles("C[C@H](F)Cl"))
    with pytest.raises(ValueError, match="invalid SMILES"):
        fix_stereo("C1CC")


def test_ensemble_is_sorted_distinct_and_within_the_window():
    mol, info = build_ensemble("CCCCO", SMALL, seed=1)
    assert mol.GetNumConformers() == info["members"] >= 1
    rel = np.array(info["rel_kcal"])
    assert rel[0] == 0 and (np.diff(rel) >= 0).all() and (rel <= SMALL.window).all()
    assert np.isclose(sum(info["weights"]), 1.0)
    d, _ = heavy_atom_rmsd_matrix(split_conformers(mol), split_conformers(mol))
    assert (d[~np.eye(len(d), dtype=bool)] >= SMALL.rmsd).all()


def test_build_writes_one_file_per_molecule_resumes_and_keeps_failures(tmp_path):
    source = tmp_path / "smiles.csv"
    source.write_text("SMILES\nCCO\nC1CC\nCC(=O)N\nCCCF\nNCC=O\n")
    out = tmp_path / "build"
    counts = build(out, "test", 5, source=source, settings=SMALL, log=lambda m: None)
    assert counts == {"done": 0, "built": 4, "failed": 1}
    error = json.loads((out / "molecules" / "1.error.json").read_text())
    assert error["smiles"] == "C1CC" and "invalid SMILES" in error["error"]
    rows = [row for row, _, _ in read_ensembles(out)]
    assert rows == [0, 2, 3, 4]
    assert summary(out)["built"] == 4 and summary(out)["failed"] == 1
    # resuming builds nothing again; other settings are refused
    assert build(out, "test", 5, source=source, settings=SMALL, log=lambda m: None)["done"] == 5
    with pytest.raises(ValueError, match="other settings"):
        build(out, "test", 5, source=source, settings=BuildSettings(pool=7, keep=3), log=lambda m: None)
    assert not list(out.rglob(".*.tmp"))
    # one SD file for score-model training, split by molecule
    n, left_out = export(out, tmp_path / "all.sdf")
    assert left_out == 0 and n == sum(mol.GetNumConformers() for _, _, mol in read_ensembles(out))
    packed, split, info = conformer_dataset(str(tmp_path / "all.sdf"))
    assert len(packed) == n and sum(len(v) for v in split.values()) == n
    # molecules of another build (a held-out set, matched by SMILES whatever its rows) are left out
    held = tmp_path / "held" / "molecules"
    held.mkdir(parents=True)
    (held / "7.json").write_text((out / "molecules" / "0.json").read_text())  # CCO under another row
    ethanol = next(mol for row, _, mol in read_ensembles(out, [0])).GetNumConformers()
    assert export(out, tmp_path / "rest.sdf", exclude=[held.parent]) == (n - ethanol, 1)
    assert "CCO" not in {Chem.MolToSmiles(Chem.RemoveHs(m)) for m in Chem.SDMolSupplier(str(tmp_path / "rest.sdf"))}
    with pytest.raises(ValueError, match="no molecules there"):
        export(out, tmp_path / "x.sdf", exclude=[tmp_path / "nothing"])
