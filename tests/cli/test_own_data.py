"""se3mol train --data / evaluate / predict on a user's labelled file, end to end through the CLI."""

import csv
import io
import json

import pytest
import torch
from typer.testing import CliRunner

from se3mol.cli.app import app
from tests.helpers.labelled import write_labelled_sdf

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TINY = ["--set", "hidden=16", "--set", "layers=2", "--batch-size", "8", "--epochs", "2"]


@pytest.fixture(scope="module")
def sdf(qm9, tmp_path_factory):
    return write_labelled_sdf(tmp_path_factory.mktemp("own_cli") / "mols.sdf", qm9, n=40)


def test_train_on_sdf_fields_reports_data_split_and_test_metrics(sdf, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(sdf), "--target", "Cv:cal/(mol K)", "--target", "gap:meV",
                            "--split", "column:split", "--out", str(out), *TINY])
    assert r.exit_code == 0, r.stderr
    assert "42 record(s) read, 40 used, 2 skipped" in r.stderr and "train 30, val 5, test 5" in r.stderr
    said = " ".join(r.stderr.split())
    assert "per epoch of 4 steps" in said and "for 2 epochs" in said and said.count("pace: about") == 1  # up front
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(result["test_mae"]) == {"Cv", "gap"}
    report = list(csv.DictReader((out / "data_report.csv").open()))
    assert any("duplicate id" in x["reason"] for x in report) and any("non-numeric" in x["reason"] for x in report)
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["split"]["method"] == "column:split" and len(best["split"]["test"]) == 5
    assert [t["column"] if "column" in t else t["name"] for t in best["model"]["targets"]] == ["Cv", "gap"]
    res = json.loads((out / "results.json").read_text())
    assert res["test_metrics"]["gap"]["n"] <= 5 and res["units"] == {"Cv": "cal/(mol K)", "gap": "meV"}

    # evaluate: the same file, metrics per target, counts, a parity plot and per-molecule rows
    plot, rows = tmp_path / "parity.png", tmp_path / "pred.csv"
    e = runner.invoke(app, ["evaluate", str(out), str(sdf), "--plot", str(plot), "-o", str(rows)])
    assert e.exit_code == 0, e.stderr
    got = json.loads(e.stdout.strip().splitlines()[-1])
    assert (got["n_records"], got["n_used"], got["n_skipped"]) == (42, 41, 1)  # duplicates count here
    assert got["metrics"]["Cv"]["n"] == 40 and 0 < got["metrics"]["Cv"]["mae"] < 50
    assert plot.stat().st_size > 1000 and "skipped" in e.stderr and "RMSE" in e.stderr
    table = list(csv.DictReader(rows.open()))
    assert len(table) == 41 and table[3]["Cv_cal_mol_K_label"] == "" and float(table[3]["Cv_cal_mol_K_pred"])

    # predict: columns named from the user's targets
    p = runner.invoke(app, ["predict", str(sdf), "--model", str(out)])
    head = p.stdout.splitlines()[0].split(",")
    assert "Cv_cal_mol_K" in head and "gap_meV" in head
    assert len(list(csv.DictReader(io.StringIO(p.stdout)))) == 42


def test_too_few_usable_rows_and_a_missing_field_are_clear_errors(tmp_path):
    path = tmp_path / "few.extxyz"
    path.write_text("".join(f"3\nname=w{k} energy={-14 - k / 10}\nO 0 0 0.12\nH 0 0.76 -0.47\nH 0 -0.76 -0.47\n"
                            for k in range(5)))
    r = runner.invoke(app, ["train", "--data", str(path), "--target", "energy:eV", "--out", str(tmp_path / "r"),
                            *TINY])
    assert r.exit_code == 1 and "only 5 usable molecule(s); training needs at least 10" in r.stderr
    r = runner.invoke(app, ["train", "--data", str(path), "--out", str(tmp_path / "r2")])
    assert r.exit_code == 2 and "needs at least one --target" in r.stderr


def test_ensemble_trains_members_on_one_split_and_fine_tunes_a_shipped_representation(sdf, tmp_path):
    out = tmp_path / "ens"
    r = runner.invoke(app, ["train", "--data", str(sdf), "--target", "Cv:cal/(mol K)", "--ensemble", "2",
                            "--out", str(out), *TINY])
    assert r.exit_code == 0, r.stderr
    a = torch.load(out / "member-0" / "best.pt", weights_only=True)
    b = torch.load(out / "member-1" / "best.pt", weights_only=True)
    assert torch.equal(a["split"]["test"], b["split"]["test"])  # one split
    assert a["train_config"]["seed"] + 1 == b["train_config"]["seed"]
    summary = json.loads((out / "ensemble.json").read_text())
    assert len(summary["test_mae"]["Cv"]) == 2
    mean = summary["ensemble_test_metrics"]["Cv"]  # the members' mean, measured on the same test split
    member_n = json.loads((out / "member-0" / "results.json").read_text())["test_metrics"]["Cv"]["n"]
    assert mean["n"] == member_n and mean["mae"] > 0 and "of their mean" in " ".join(r.stderr.split())
    assert json.loads(r.stdout.strip().splitlines()[-1])["ensemble_test_mae"]["Cv"] == mean["mae"]
    (out / "member-1" / "results.json").unlink()  # as if the run had stopped before its second member finished
    again = runner.invoke(app, ["train", "--resume", str(out)])
    assert again.exit_code == 0, again.stderr
    assert "finished already" in again.stderr and (out / "member-1" / "results.json").is_file()
    e = runner.invoke(app, ["evaluate", str(out), str(sdf), "--plot", str(tmp_path / "p.png")])
    assert e.exit_code == 0 and "ensemble of 2" in e.stderr
    p = runner.invoke(app, ["predict", str(sdf), "--model", str(out)])
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == 42 and float(rows[0]["Cv_cal_mol_K_std"]) > 0

    ft = tmp_path / "ft"
    r = runner.invoke(app, ["train", "--data", str(sdf), "--target", "Cv:cal/(mol K)", "--init-from", "qm9-egnn-gap",
                            "--epochs", "1", "--batch-size", "8", "--out", str(ft)])
    assert r.exit_code == 0, r.stderr
    assert "representation from qm9-egnn-gap; new heads for Cv" in r.stderr
    shipped = torch.load("models/qm9-egnn-gap.pt", weights_only=True)
    tuned = torch.load(ft / "best.pt", weights_only=True)
    assert tuned["model"]["config"] == shipped["model"]["config"]
    assert tuned["model"]["targets"][0]["name"] == "Cv"


def test_csv_of_smiles_trains_with_missing_labels_and_predict_passes_columns_through(tmp_path):
    table = tmp_path / "t.csv"
    smiles = ["C" * k + x for k in range(1, 7) for x in ("O", "N", "C(=O)O", "Cl")]
    lines = ["name,smiles,y1,y2"] + [f"m{k},{s},{len(s) * 0.5},{'' if k % 3 == 0 else k}"
                                      for k, s in enumerate(smiles)]
    table.write_text("\n".join(lines) + "\nbad,C1CC,1.0,2.0\n")
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(table), "--smiles-column", "smiles", "--id-column", "name",
                            "--target", "y1", "--target", "y2", "--split", "random", "--out", str(out), *TINY])
    assert r.exit_code == 0, r.stderr
    assert "25 record(s) read, 24 used, 1 skipped" in " ".join(r.stderr.split())
    report = list(csv.DictReader((out / "data_report.csv").open()))
    assert [x["id"] for x in report if x["status"] == "skipped"] == ["bad"]
    assert sum(x["reason"] == "missing label for target 'y2'" for x in report) == 8
    p = runner.invoke(app, ["predict", str(table), "--smiles-column", "smiles", "--id-column", "name",
                            "--model", str(out)])
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == 25 and rows[0]["id"] == "m0" and "y1" in rows[0] and "y1_pred" not in rows[0]
    assert rows[-1]["status"] == "error" and float(rows[-1]["input_y1"]) == 1.0  # y1 is also an output


def test_energy_and_forces_from_extxyz_train_together(tmp_path):
    from tests.helpers.labelled import ch4_frames as _ch4_frames

    path = _ch4_frames(tmp_path / "ch4.extxyz", n=40)
    out = tmp_path / "ef"
    r = runner.invoke(app, ["train", "--data", str(path), "--target", "energy:eV", "--forces", "forces",
                            "--epochs", "30", "--batch-size", "8", "--lr", "2e-3", "--set", "hidden=32",
                            "--set", "layers=2", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    history = list(csv.DictReader((out / "metrics.csv").open()))
    first, best = float(history[0]["val_mae_forces_eV_A"]), min(float(h["val_mae_forces_eV_A"]) for h in history)
    assert best < 0.6 * first  # the forces are learned, not only the energies
    assert res["units"]["forces"] == "eV/A" and res["test_mae"]["forces"] > 0
    bad = runner.invoke(app, ["train", "--data", str(path), "--target", "gap:eV", "--forces", "forces",
                              "--out", str(tmp_path / "x"), *TINY])
    assert bad.exit_code == 1 and "energy summed over atoms" in bad.stderr


def test_the_own_data_example_runs_as_written(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    wrapper = tmp_path / "se3mol"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m se3mol \"$@\"\n")
    wrapper.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "SE3MOL": str(wrapper), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "2",
           "HOME": str(tmp_path)}
    r = subprocess.run(["bash", str(ROOT / "examples" / "own_data.sh")], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [line.split(" | ") for line in r.stdout.splitlines() if " | " in line]
    assert [x[0] for x in rows] == ["ethanol", "pyridine", "glycine", "urea", "trifluoromethanol"]
    assert all(x[1] == "ok" and 5 < float(x[2]) < 60 and 1 < float(x[3]) < 15 for x in rows[:4])
    assert rows[4][1] == "error" and "element(s) F" in rows[4][4]
    assert (tmp_path / "se3mol-own-data" / "parity.png").is_file()


def test_train_on_a_full_disk_is_exit_5_with_a_message_and_resumes_from_elsewhere(sdf, tmp_path, monkeypatch):
    """A full disk printed a raw PyTorch traceback (exit 1); a relative --data broke --resume elsewhere."""
    import errno
    import os

    from se3mol.training import loop

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "last.pt"))

    monkeypatch.chdir(sdf.parent)
    monkeypatch.setattr(loop, "atomic_save", full)
    r = runner.invoke(app, ["train", "--data", sdf.name, "--target", "gap:meV", "--out", str(tmp_path / "run"),
                            *TINY])
    assert r.exit_code == 5, r.output
    assert "cannot write the run directory" in r.stderr and "No space left on device" in r.stderr
    assert "Traceback" not in r.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == str(sdf.resolve())  # absolute: --resume from any working directory


def test_train_shows_progress_while_featurising(tmp_path, monkeypatch):
    """A 300-carbon row kept train silent for over 10 minutes: featurising now reports as it goes."""
    from se3mol.data import files

    monkeypatch.setattr(files, "PROGRESS_EVERY", 0.0)
    monkeypatch.setenv("SE3MOL_CACHE", str(tmp_path / "cache"))  # featurised now, not read from an earlier run
    table = tmp_path / "t.csv"
    table.write_text("smiles,y\n" + "".join(f"{'C' * (1 + k % 6)}O,{k % 7}\n" for k in range(14)))
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--out", str(tmp_path / "run"), *TINY])
    assert r.exit_code == 0, r.output
    assert "featurising " in r.stderr and "14 records in" in r.stderr


def test_split_summary_says_where_validation_and_test_came_from(tmp_path):
    """It said 'split random' when validation and test came from files."""
    rows = "".join(f"{'C' * (1 + k % 6)}{'O' * (k % 3)},{k % 7}\n" for k in range(24))
    (tmp_path / "train.csv").write_text("smiles,y\n" + rows)
    (tmp_path / "val.csv").write_text("smiles,y\nCCCO,1\nCCCCO,2\n")
    (tmp_path / "test.csv").write_text("smiles,y\nCCOC,1\nCOC,2\n")
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "train.csv"), "--val", str(tmp_path / "val.csv"),
                            "--test", str(tmp_path / "test.csv"), "--target", "y", "--out", str(tmp_path / "run"),
                            *TINY])
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stderr.split())
    assert "(val from val.csv, test from test.csv)" in flat and "split random" not in flat
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                            "--target", "y", "--out", str(tmp_path / "run2"), *TINY])
    assert r.exit_code == 0, r.output
    assert "(test from test.csv, val by split random of the rest)" in " ".join(r.stderr.split())


def test_own_data_defaults_fit_the_molecules(tmp_path):
    """A new --data run without --graph / --batch-size: radius graph for drug-sized molecules, full for small
    ones (QM9's), batches of 32 (a few hundred molecules made a few steps an epoch at 96), the 2D fingerprint
    and the total charge as inputs."""
    tiny = ["--set", "hidden=16", "--set", "layers=2", "--epochs", "1"]
    big = tmp_path / "big.csv"
    big.write_text("smiles,y\n" + "".join(f"{'C' * (10 + k % 5)}O{'C' * (k % 3)},{k % 7}\n" for k in range(20)))
    small = tmp_path / "small.csv"
    small.write_text("smiles,y\n" + "".join(f"{'C' * (1 + k % 4)}O,{k % 7}\n" for k in range(20)))
    for path, graph in ((big, "radius"), (small, "full")):
        out = tmp_path / path.stem
        r = runner.invoke(app, ["train", "--data", str(path), "--target", "y", "--out", str(out), *tiny])
        assert r.exit_code == 0, r.output
        cfg = json.loads((out / "config.json").read_text())
        assert (cfg["graph"], cfg["batch_size"], cfg["fingerprint"]) == (graph, 32, "morgan")  # auto, resolved
        model = torch.load(out / "best.pt", weights_only=True)["model"]
        assert model["graph"]["kind"] == graph and model["fingerprint"]["kind"] == "morgan" and model["charge_input"]
        assert model["config"]["cutoff"] == (5.0 if graph == "radius" else None)  # smooth at the radius graph's edge
    r = runner.invoke(app, ["train", "--data", str(big), "--target", "y", "--graph", "full", "--batch-size", "8",
                            "--out", str(tmp_path / "given"), *tiny])
    cfg = json.loads((tmp_path / "given" / "config.json").read_text())
    assert r.exit_code == 0 and (cfg["graph"], cfg["batch_size"]) == ("full", 8)  # what is given wins
    r = runner.invoke(app, ["train", "--data", str(small), "--target", "y", "--epochs", "1", "--out",
                            str(tmp_path / "width")])
    assert r.exit_code == 0 and json.loads((tmp_path / "width" / "config.json").read_text())["model_config"] == {
        "hidden": 64}  # the own-data width; QM9's default is 128


def test_charged_molecules_train_with_their_charge_as_an_input(tmp_path):
    # Protonated amines and carboxylates beside neutral molecules: none is dropped, the total charge is a model
    # input, and predict scores ions (warning for a charge no training molecule had).
    table = tmp_path / "ions.csv"
    smiles = [s for k in range(1, 7) for s in ("C" * k + "[NH3+]", "C" * k + "C(=O)[O-]", "C" * k + "O")]
    table.write_text("smiles,y\n" + "".join(f"{s},{k * 0.1}\n" for k, s in enumerate(smiles)))
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--fingerprint", "none", "--out", str(out),
                            *TINY])
    assert r.exit_code == 0, r.stderr
    assert f"{len(smiles)} record(s) read, {len(smiles)} used, 0 skipped" in " ".join(r.stderr.split())
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["model"]["charge_input"] is True and best["model"]["config"]["node_attr_dim"] == 1
    assert best["domain"]["charges"] == [-1, 0, 1]
    query = tmp_path / "q.smi"
    query.write_text("CC[NH3+] ammonium\nC[N+](C)(C)C[N+](C)(C)C dication\nCCO ethanol\n")
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["predict", str(query), "--model", str(out)]).stdout)))
    assert [x["status"] for x in rows] == ["ok"] * 3 and all(x["y"] for x in rows)
    assert [x["warning"] for x in rows] == ["", "total charge +2; training molecules had -1, +0, +1 (extrapolation)",
                                            ""]

    e = runner.invoke(app, ["evaluate", str(out), str(table), "--target", "y", "--plot", str(tmp_path / "p.png")])
    assert e.exit_code == 0, e.stderr
    assert json.loads(e.stdout.strip().splitlines()[-1])["n_used"] == len(smiles)  # ions scored, none skipped

    # The charge is an input: the same atoms and coordinates with another total charge score differently.
    from se3mol.checkpoint import load_model
    from se3mol.graph import collate
    from se3mol.molecule import Molecule

    model, _ = load_model(out / "best.pt")
    mol = Molecule(z=[6, 8, 1, 1, 1, 1], pos=[[0, 0, 0], [1.4, 0, 0], [-.5, .9, 0], [-.5, -.9, 0], [-.5, 0, .9],
                                                [1.8, .8, 0]])
    ys = [float(model(collate([Molecule(z=mol.z, pos=mol.pos, charge=q)], model.graph))["y"]) for q in (0, 1)]
    assert ys[0] != ys[1]

    # A model fine-tuned from one that takes neutral molecules only keeps to neutral ones, and says so (here too
    # few are left to train on).
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--init-from", "qm9-egnn-gap",
                            "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "neutral")])
    assert r.exit_code == 1 and "6 used, 12 skipped (12 charged species)" in " ".join(r.stderr.split())


def test_init_from_takes_the_graph_its_weights_were_trained_on(tmp_path):
    # Small molecules would get the full graph by default; a model pretrained on a radius graph brings its own.
    table = tmp_path / "t.csv"
    table.write_text("smiles,y\n" + "".join(f"{'C' * k}{x},{k * 0.3}\n" for k in range(1, 6) for x in "ON"))
    base = tmp_path / "base"
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--graph", "radius", "--cutoff", "4",
                            "--out", str(base), *TINY])
    assert r.exit_code == 0, r.stderr
    ft = tmp_path / "ft"
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--init-from", str(base / "best.pt"),
                            "--epochs", "1", "--out", str(ft)])
    assert r.exit_code == 0, r.stderr
    assert "all weights from" in r.stderr
    assert torch.load(ft / "best.pt", weights_only=True)["model"]["graph"] == {"kind": "radius", "cutoff": 4.0,
                                                                                "max_hops": None}


def test_a_2d_fingerprint_input_trains_predicts_evaluates_and_fine_tunes(tmp_path):
    table = tmp_path / "t.csv"
    smiles = ["C" * k + x for k in range(1, 7) for x in ("O", "N", "C(=O)O", "Cl")]
    table.write_text("smiles,y\n" + "".join(f"{s},{len(s) * 0.5}\n" for s in smiles))
    out = tmp_path / "fp"
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--fingerprint", "morgan",
                            "--out", str(out), *TINY])
    assert r.exit_code == 0, r.stderr
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["model"]["fingerprint"] == {"kind": "morgan", "radius": 2, "bits": 2048}
    assert best["state_dict"]["fingerprint_net.0.weight"].shape == (16, 2048)

    # The fingerprint is an input: two molecules with one geometry but other SMILES score differently.
    from se3mol.checkpoint import load_model
    from se3mol.chem import embed_smiles, morgan_counts
    from se3mol.graph import collate

    model, _ = load_model(out / "best.pt")
    batch = collate([embed_smiles("CCO")], model.graph)
    a = model(batch.replace(mol_attr=torch.from_numpy(morgan_counts("CCO"))[None]))["y"]
    b = model(batch.replace(mol_attr=torch.from_numpy(morgan_counts("CCN"))[None]))["y"]
    assert float(a) != float(b)

    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["predict", str(table), "--model", str(out)]).stdout)))
    assert len(rows) == len(smiles) and all(x["status"] == "ok" and x["y"] for x in rows)
    e = runner.invoke(app, ["evaluate", str(out), str(table), "--target", "y", "--plot", str(tmp_path / "p.png")])
    assert e.exit_code == 0 and json.loads(e.stdout.strip().splitlines()[-1])["n_used"] == len(smiles), e.stderr

    # Fine-tuning a model without a fingerprint onto one with: its weights, and a fresh fingerprint encoder.
    plain = tmp_path / "plain"
    assert runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--fingerprint", "none",
                               "--out", str(plain), *TINY]).exit_code == 0
    ft = tmp_path / "ft"
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--fingerprint", "morgan",
                            "--init-from", str(plain / "best.pt"), "--epochs", "1", "--out", str(ft)])
    assert r.exit_code == 0, r.stderr
    assert "a fresh 2D fingerprint encoder" in " ".join(r.stderr.split())


def test_a_model_trained_on_neutral_molecules_scores_an_ion_as_neutral_with_a_warning(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("smiles,y\n" + "".join(f"{'C' * k}{x},{k * 0.3}\n" for k in range(1, 7) for x in "ON"))
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--out", str(out), *TINY]).exit_code == 0
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["domain"]["charges"] == [0]
    assert not best["state_dict"]["representation.node_in.weight"].any()  # the charge never had an effect
    query = tmp_path / "q.smi"
    query.write_text("CCC[NH3+] ion\nCCCN amine\n")
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["predict", str(query), "--model", str(out)]).stdout)))
    assert [x["status"] for x in rows] == ["ok", "ok"]
    assert rows[0]["warning"] == "total charge +1; training molecules had +0 (extrapolation)"
