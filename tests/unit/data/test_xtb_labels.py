"""The GFN2-xTB pretraining-data builder: variants, chunks, errors kept, resume, read-back and extxyz export."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("tblite")

from se3mol.data.xtb_labels import LabelSettings, build, export, label_molecule, read_chunks, summary  # noqa: E402

SMILES = ["CC(=O)O", "C1CC", "c1ccccc1Cl", "CCN(CC)CC", "OCC1CC1", "C" * 70]
NO_VARIANTS = {"halogen_to_iodo": 0.0}


def _settings(**kw):
    return LabelSettings(conformers=2, mmff=1, chunk=2, **kw)


def test_variants_add_p_i_and_charges():
    everything = {"halogen_to_iodo": 1.0, "protonated_amine": 1.0, "carboxylate": 1.0, "phosphate": 1.0}
    rec, arrays = label_molecule("c1ccccc1Cl", 0, _settings(variant_rates=everything))
    assert rec["variant"] == "halogen_to_iodo" and 53 in arrays["z"].tolist() and 17 not in arrays["z"].tolist()
    rec, _ = label_molecule("CCN(CC)CC", 0, _settings(variant_rates=everything))
    assert (rec["variant"], rec["charge"]) == ("protonated_amine", 1)
    rec, _ = label_molecule("CC(=O)O", 0, _settings(variant_rates=everything))
    assert (rec["variant"], rec["charge"]) == ("carboxylate", -1)
    rec, arrays = label_molecule("OCC1CC1", 0, _settings(variant_rates={"phosphate": 1.0}))
    assert rec["variant"] == "phosphate" and 15 in arrays["z"].tolist()


def test_labels_are_physical():
    rec, a = label_molecule("OCC1CC1", 3, _settings(variant_rates=NO_VARIANTS))
    c, n = rec["conformers"], a["z"].shape[0]
    assert (c, n) == (2, 13)  # C4H8O
    assert a["pos"].shape == a["forces"].shape == (c, n, 3) and a["charges"].shape == (c, n)
    assert np.allclose(a["charges"].sum(axis=1), 0.0, atol=1e-3)  # neutral molecule
    assert np.allclose(a["forces"].sum(axis=1), 0.0, atol=1e-3)  # no net force on an isolated molecule
    assert (a["homo"] < a["lumo"]).all() and (a["lumo"] - a["homo"] > 1.0).all()  # a gap of some eV
    assert np.ptp(a["energy"]) < 2.0  # conformers of one molecule: within an eV or two
    assert a["energy"].mean() < -300  # eV


def test_build_keeps_errors_resumes_and_exports(tmp_path):
    src = tmp_path / "src.smi"
    src.write_text("\n".join(SMILES) + "\n")
    out = tmp_path / "build"
    settings = _settings(variant_rates=NO_VARIANTS, max_heavy_atoms=60)
    build(out, 4, settings, str(src))
    assert len(list((out / "chunks").glob("*.json"))) == 2
    build(out, 6, settings, str(src))  # extends: the first two chunks are kept as they are
    chunks = sorted((out / "chunks").glob("*.json"))
    assert len(chunks) == 3
    records = [m for c in chunks for m in json.loads(c.read_text())["molecules"]]
    assert sorted(r["smiles"] for r in records) == sorted(SMILES)  # every molecule accounted for
    errors = {r["smiles"]: r["error"] for r in records if "error" in r}
    assert errors == {"C1CC": "invalid SMILES", "C" * 70: "70 heavy atoms, more than 60"}
    counts = summary(out)
    assert (counts["molecules"], counts["failed"], counts["conformers"]) == (4, 2, 8)
    with pytest.raises(SystemExit, match="other settings"):
        build(out, 6, _settings(variant_rates=NO_VARIANTS, seed=1), str(src))
    got = list(read_chunks(out))
    assert sorted(r["smiles"] for r, _ in got) == sorted(s for s in SMILES if s not in errors)
    from ase.io import read

    assert export(out, tmp_path / "all.extxyz") == 8
    frames = read(tmp_path / "all.extxyz", index=":")
    rec, arrays = got[0]
    assert np.allclose(frames[0].positions, arrays["pos"][0], atol=1e-5)
    assert np.allclose(frames[0].get_forces(), arrays["forces"][0], atol=1e-5)  # ASE: a calculator's results
    assert frames[0].get_potential_energy() == pytest.approx(float(arrays["energy"][0]))
    assert frames[0].info["charge"] == rec["charge"] and frames[0].info["homo"] < frames[0].info["lumo"]
    # all conformers of a molecule on one side of the split; a build exported twice has each molecule twice
    assert export([out, out], tmp_path / "two.extxyz", holdout=0.3) == 16
    sides: dict[str, set] = {}
    for f in read(tmp_path / "two.extxyz", index=":"):
        sides.setdefault(f.info["smiles"], set()).add(f.info["split"])
    assert all(len(s) == 1 for s in sides.values()) and set().union(*sides.values()) <= {"train", "val", "test"}


def test_parallel_build_equals_serial(tmp_path, monkeypatch):
    # Two OpenMP threads make GFN2-xTB's energies vary in the last bits: the builder's workers must run one each,
    # whatever the caller's setting (and the caller's setting is left as it was).
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    src = tmp_path / "src.smi"
    src.write_text("\n".join(SMILES[:4]) + "\n")
    settings = _settings(variant_rates=NO_VARIANTS)
    build(tmp_path / "one", 4, settings, str(src), workers=1)
    build(tmp_path / "two", 4, settings, str(src), workers=2)
    assert os.environ["OMP_NUM_THREADS"] == "2"
    one, two = list(read_chunks(tmp_path / "one")), list(read_chunks(tmp_path / "two"))
    assert [r for r, _ in one] == [r for r, _ in two]
    assert all(np.array_equal(a["energy"], b["energy"]) and np.array_equal(a["pos"], b["pos"])
               for (_, a), (_, b) in zip(one, two, strict=True))


def test_a_smiles_file_source_is_read_as_predict_reads_it(tmp_path):
    from se3mol.data.xtb_labels import source_smiles

    src = tmp_path / "named.smi"
    src.write_text("smiles name\n# a comment\nCCO ethanol\nc1ccccc1\tbenzene, dry\n")
    assert source_smiles(str(src)) == (str(src), ["CCO", "c1ccccc1"])  # names, comments and the header left out
