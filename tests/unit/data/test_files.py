"""Your own data: LabelledDataset from SDF fields and extxyz info keys, bad records, splits, NaN labels."""

import math

import numpy as np
import pytest
import torch

from se3mol.data.files import MIN_MOLECULES, LabelledDataset, split_dataset
from se3mol.data.splits import column_split, murcko_scaffold, random_split, scaffold_split
from se3mol.targets import parse_target_spec
from se3mol.training.metrics import masked_l1, regression_metrics
from tests.helpers.labelled import ch4_frames as _ch4_frames
from tests.helpers.labelled import write_labelled_sdf


@pytest.fixture(scope="module")
def qm9():
    from se3mol.data import load_qm9

    return load_qm9(verbose=False)


@pytest.fixture(scope="module")
def sdf(qm9, tmp_path_factory):
    return write_labelled_sdf(tmp_path_factory.mktemp("own") / "mols.sdf", qm9)


def test_target_specs_carry_units_and_pooling():
    t = parse_target_spec("logS:log(mol/L)")
    assert (t.name, t.unit, t.column, t.pooling) == ("logS", "log(mol/L)", "logS_log_mol_L", "mean")
    assert parse_target_spec("energy:eV").pooling == "sum"
    assert parse_target_spec("energy:eV:mean").pooling == "mean"
    assert parse_target_spec("Cv:cal/(mol K)").column == "Cv_cal_mol_K"
    assert parse_target_spec("y1").column == "y1"
    with pytest.raises(ValueError, match="must start with a letter"):
        parse_target_spec("1y:eV")


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


def test_splits_are_disjoint_seeded_and_scaffold_groups_stay_together():
    s = random_split(100, (0.8, 0.1, 0.1), seed=1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [80, 10, 10]
    assert len(torch.unique(torch.cat(list(s.values())))) == 100
    assert torch.equal(s["test"], random_split(100, (0.8, 0.1, 0.1), seed=1)["test"])
    assert not torch.equal(s["test"], random_split(100, (0.8, 0.1, 0.1), seed=2)["test"])
    smiles = ["c1ccccc1C", "c1ccccc1O", "c1ccccc1N", "C1CCCCC1O", "C1CCCCC1N", "CCO", "CCN", "CCC", "C1CC1",
              "C1CC1C", "c1ccncc1", "c1ccncc1C"] * 3
    sc = scaffold_split(smiles, (0.6, 0.2, 0.2), seed=0)
    where = {}
    for part, idx in sc.items():
        for k in idx.tolist():
            where.setdefault(murcko_scaffold(smiles[k]), set()).add(part)
    assert all(len(parts) == 1 for parts in where.values())  # no scaffold in two parts
    assert sum(len(v) for v in sc.values()) == len(smiles)
    assert murcko_scaffold("c1ccccc1CCO") == "c1ccccc1"
    with pytest.raises(ValueError, match="molecule 2: 'holdout'"):
        column_split(["train", "holdout", "test"], "split")


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


def test_missing_labels_give_neither_loss_nor_gradient():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = torch.tensor([[2.0, float("nan")], [1.0, 5.0]])
    scale = torch.tensor([1.0, 2.0])
    loss = masked_l1(pred, y, scale, torch.tensor([0, 1]), 2)
    # target 0: (1 + 2) / 2 = 1.5; target 1: only molecule 2, |4 - 5| / 2 = 0.5; mean 1.0
    assert loss.detach().item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 1] == 0
    m = regression_metrics(pred.detach(), y, [parse_target_spec("a"), parse_target_spec("b")])
    assert m["b"]["n"] == 1 and m["a"]["mae"] == pytest.approx(1.5) and m["a"]["rmse"] == pytest.approx(np.sqrt(2.5))


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
