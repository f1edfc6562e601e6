"""Your own data (se3mol.data.files): LabelledDataset from SDF fields and extxyz info keys, bad records, NaN labels,
given val/test files, per-element offsets, forces."""

import math
from pathlib import Path

import pytest
import torch

from se3mol.data.files import MIN_MOLECULES, LabelledDataset, split_dataset
from tests.helpers.labelled import ch4_frames as _ch4_frames
from tests.helpers.labelled import write_labelled_sdf


@pytest.fixture(scope="module")
def sdf(qm9, tmp_path_factory):
    return write_labelled_sdf(tmp_path_factory.mktemp("own") / "mols.sdf", qm9)


def test_sdf_fields_become_labels_and_every_problem_is_reported(sdf, qm9):
    ds = LabelledDataset.from_files([sdf], ["Cv:cal/(mol K)", "gap:meV"], keep_fields=["split"], cache=False)
    assert ds.n_records == 42 and len(ds) == 40  # the duplicate and the garbage record are skipped
    reasons = {r["id"]: r["reason"] for r in ds.report}
    assert "duplicate id 'dsgdb9nsd_000002'" in reasons["dsgdb9nsd_000002"]
    assert any(r["status"] == "skipped" and r["reason"].startswith("unreadable record") for r in ds.report)
    assert "non-numeric label 'n/a?' for target 'Cv'" in reasons["dsgdb9nsd_000004"]
    assert "missing label for target 'gap'" in reasons["dsgdb9nsd_000005"]
    # labels in file order, NaN where missing, the other target of the row kept
    assert math.isnan(ds.y[3, 0]) and not math.isnan(ds.y[3, 1])
    assert math.isnan(ds.y[4, 1]) and ds.y[4, 0] == pytest.approx(float(qm9.y[4, 11]), abs=1e-4)
    assert ds.label_counts() == {"Cv": 39, "gap": 32}
    assert ds.fields["split"][:2] == ["train", "train"] and ds.ids[0] == "dsgdb9nsd_000001"
    assert torch.equal(ds.counts, qm9.counts[:40])
    assert "42 record(s) read, 40 used, 2 skipped" in ds.summary()


def test_a_record_without_any_usable_label_is_skipped_with_the_reason(tmp_path, qm9):
    path = write_labelled_sdf(tmp_path / "m.sdf", qm9, n=12, bad=False)
    ds = LabelledDataset.from_files([path], ["logS"], cache=False)
    assert len(ds) == 0 and ds.n_records == 12
    assert all(r["reason"] == "no usable label: missing label for target 'logS'" for r in ds.report)
    with pytest.raises(ValueError, match=f"only 0 usable molecule.*at least {MIN_MOLECULES}"):
        split_dataset(ds)


def test_extxyz_info_keys_are_labels_and_elements_can_be_restricted(tmp_path):
    path = tmp_path / "f.extxyz"
    path.write_text("3\nname=w1 energy=-14.2 dipole=1.8\nO 0 0 0.12\nH 0 0.76 -0.47\nH 0 -0.76 -0.47\n"
                    "2\nname=hcl energy=-12.0\nH 0 0 0\nCl 0 0 1.27\n")
    ds = LabelledDataset.from_files([path], ["energy:eV", "dipole:D"], cache=False)
    assert ds.ids == ["w1", "hcl"] and ds.y[0, 0] == pytest.approx(-14.2) and math.isnan(ds.y[1, 1])
    assert ds.targets[0].pooling == "sum" and ds.elements == (1, 8, 17)
    only_hcno = LabelledDataset.from_files([path], ["energy:eV"], elements=[1, 6, 7, 8, 9], cache=False)
    assert only_hcno.ids == ["w1"]
    assert "element(s) Cl not among the model's elements" in only_hcno.report[0]["reason"]


def test_featurised_files_are_cached_by_content_and_settings(sdf, tmp_path, monkeypatch):
    monkeypatch.setenv("SE3MOL_CACHE", str(tmp_path / "cache"))
    a = LabelledDataset.from_files([sdf], ["Cv"])
    assert len(list((tmp_path / "cache").glob("labelled-*.pt"))) == 1
    b = LabelledDataset.from_files([sdf], ["Cv"])
    assert torch.equal(a.pos, b.pos) and a.ids == b.ids and a.report == b.report
    assert torch.equal(a.y.isnan(), b.y.isnan())
    LabelledDataset.from_files([sdf], ["Cv", "gap"])  # other settings: another entry
    assert len(list((tmp_path / "cache").glob("labelled-*.pt"))) == 2
    copy = tmp_path / "copy.sdf"  # the same content elsewhere: a cache hit that names the file as given now
    copy.write_bytes(Path(sdf).read_bytes())
    c = LabelledDataset.from_files([copy], ["Cv"])
    assert len(list((tmp_path / "cache").glob("labelled-*.pt"))) == 2 and torch.equal(a.pos, c.pos)
    assert set(c.sources) == {str(copy)} and {r["source"] for r in c.report} == {str(copy)}
    assert set(a.sources) == {str(sdf)}


def test_given_val_and_test_files_are_those_parts(qm9, tmp_path):
    a = write_labelled_sdf(tmp_path / "a.sdf", qm9, n=30, bad=False)
    ds_a = LabelledDataset.from_files([a], ["Cv"], cache=False)
    ds_b = LabelledDataset.from_dataframe(
        __import__("pandas").DataFrame({"smiles": ["CCO", "CCN", "CCC"], "Cv": [15.0, 16.0, 17.0]}), ["Cv"])
    ds, split = split_dataset(ds_a, "random", (0.8, 0.1, 0.1), 0, test=ds_b)
    assert split["test"].tolist() == [30, 31, 32]
    assert len(split["train"]) + len(split["val"]) == 30 and len(split["val"]) == 3  # 0.1/0.9 of 30
    with pytest.raises(ValueError, match="appear in two files"):
        split_dataset(ds_a, val=ds_a)


def test_sum_pooled_targets_get_per_element_offsets_from_the_compositions():
    from se3mol.nn.model import build_model

    ds = LabelledDataset.from_dataframe(__import__("pandas").DataFrame(
        {"smiles": ["C", "CC", "CCO", "O", "CN", "NN", "CCCC", "OCO"], "e": [0.0] * 8}), ["e:eV"])
    comp = ds.composition(torch.arange(len(ds)))  # [M,119]
    assert comp[2, 6] == 2 and comp[2, 8] == 1 and comp[2, 1] == 6
    ref = torch.zeros(119, dtype=torch.float64)
    ref[[1, 6, 7, 8]] = torch.tensor([-13.6, -1029.0, -1484.0, -2041.0], dtype=torch.float64)
    y = comp @ ref + torch.linspace(-0.05, 0.05, len(ds), dtype=torch.float64)  # total energies, eV
    model = build_model("egnn", ds.targets, {"hidden": 8, "layers": 1}, ds.elements)
    model.heads.fit_normalization(y[:, None], ds.counts, comp)
    assert model.heads.element_offset[0, 6] == pytest.approx(-1029.0, abs=0.5)
    assert float(model.heads.std[0]) < 0.1  # what is left for the network: the spread, not 1000s of eV
    # A checkpoint from before the offsets loads, with zero offsets
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("element_offset")}
    model.load_state_dict(state)
    assert float(model.heads.element_offset.abs().sum()) == 0


def test_forces_are_read_per_atom_and_derived_forces_rotate_with_the_molecule(tmp_path):
    from se3mol.graph import GraphConfig
    from se3mol.nn.model import build_model
    from se3mol.training.metrics import predicted_forces

    path = _ch4_frames(tmp_path / "ch4.extxyz", n=6)
    ds = LabelledDataset.from_files([path], ["energy:eV"], forces="forces", cache=False)
    assert ds.forces.shape == (30, 3) and torch.isfinite(ds.forces).all()
    assert "forces (forces) 6" in ds.summary()
    b = ds.batch(torch.tensor([1, 2]), GraphConfig("full"), ["energy"])
    assert torch.allclose(b.forces, ds.forces[5:15].to(b.forces.dtype))
    no = LabelledDataset.from_files([path], ["energy:eV"], forces="gradients", cache=False)
    assert len(no) == 6 and torch.isnan(no.forces).all()
    assert "missing forces ('gradients')" in no.report[0]["reason"]

    torch.manual_seed(0)
    model = build_model("egnn", ds.targets, {"hidden": 16, "layers": 2}, ds.elements).double()
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    b = b.to(dtype=torch.float64)
    pos = b.pos.clone().requires_grad_(True)
    f = predicted_forces(model(b.replace(pos=pos))["energy"], pos)
    pos_r = (b.pos @ q.T).requires_grad_(True)
    f_r = predicted_forces(model(b.replace(pos=pos_r))["energy"], pos_r)
    assert torch.allclose(f_r, f @ q.T, atol=1e-10) and f.abs().max() > 0


def test_absurd_labels_are_dropped_and_reported():
    """SD labels of 1e30 and -1e30 once trained as they were (test MAE 6e28, exit 0) and went unreported."""
    import pandas as pd

    from se3mol.data.files import LabelledDataset

    values = [0.1 * k for k in range(20)] + [1e30, -1e30]
    df = pd.DataFrame({"smiles": ["C" * (1 + k % 5) + "O" * (k // 5) for k in range(22)], "y": values,
                       "z": [1.0] * 20 + [2.0, None]})
    ds = LabelledDataset.from_dataframe(df, ["y", "z"])
    dropped = [r for r in ds.report if r["status"] == "label dropped"]
    assert len(dropped) == 2 and all("outlier" in r["reason"] and "'y'" in r["reason"] for r in dropped)
    assert sorted(r["index"] for r in dropped) == [20, 21]
    assert len(ds) == 21  # record 21 had no other label: skipped, and says why
    assert any(r["status"] == "skipped" and "every label was an outlier" in r["reason"] for r in ds.report)
    assert float(ds.y[:, 0].abs().nan_to_num().max()) < 10 and "2 outlier label(s) dropped" in ds.summary()
    kept = LabelledDataset.from_dataframe(df, ["y", "z"], outlier_mad=0)
    assert len(kept) == 22 and not any(r["status"] == "label dropped" for r in kept.report)


def test_conversions_are_counted_and_reported(tmp_path):
    """2D records without hydrogens were re-embedded silently: '0 skipped' and an empty report."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from se3mol.data.files import LabelledDataset

    path = tmp_path / "flat.sdf"
    with path.open("w") as f:
        for k, smi in enumerate(["CCO", "CCN", "CC(=O)O.[Na+].[OH-]", "c1ccccc1O"]):
            m = Chem.MolFromSmiles(smi)
            AllChem.Compute2DCoords(m)
            m.SetProp("_Name", f"m{k}")
            m.SetProp("y", str(k))
            f.write(Chem.MolToMolBlock(m) + f">  <y>\n{k}\n\n$$$$\n")
    ds = LabelledDataset.from_files([path], ["y"], cache=False)
    converted = [r for r in ds.report if r["status"] == "converted"]
    assert len(ds) == 4 and len(converted) == 4
    assert all("re-embedded in 3D" in r["reason"] and "hydrogen(s) missing" in r["reason"] for r in converted)
    assert "removed" in converted[2]["reason"]
    assert "4 converted (2D re-embedded, hydrogens added or salts stripped)" in ds.summary()
    smi = tmp_path / "t.csv"
    smi.write_text("smiles,y\nCCO,1\nCCN,2\n")
    assert "2 embedded in 3D from SMILES" in LabelledDataset.from_files([smi], ["y"], cache=False).summary()
