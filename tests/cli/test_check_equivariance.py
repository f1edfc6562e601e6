"""``se3mol check-equivariance``: exit codes, table, JSON, model loading."""

import json

import pytest
import torch
from ase.data import chemical_symbols
from typer.testing import CliRunner

from se3mol.cli.app import app
from se3mol.cli.common import EXIT_BAD_MODEL, EXIT_FAILURE, EXIT_OK
from se3mol.equivariance import TRANSFORMS, default_molecules
from se3mol.nn import get_entry, model_names

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["check-equivariance", "--trials", "1", *args])


def test_equivariant_model_passes():
    result = _run("--model", "egnn")
    assert result.exit_code == EXIT_OK, result.output
    rows = [line for line in result.stdout.splitlines() if "mu_vector" in line]
    assert len(rows) == 4 and all("pass" in line for line in rows)
    assert "PASSED" in result.stdout and "FAIL" not in result.stdout


def test_control_fails():
    result = _run("--model", "control-mlp")
    assert result.exit_code == EXIT_FAILURE, result.output
    assert "FAIL" in result.stdout and "FAILED" in result.stdout


def test_json():
    result = _run("--model", "egnn", "--json")
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["model"] == "egnn" and report["dtype"] == "float64"
    assert {r["transform"] for r in report["rows"]} == set(TRANSFORMS)
    assert {r["kind"] for r in report["rows"]} == {"scalar", "vector", "tensor2"}
    assert all(r["max_rel_error"] < 1e-9 for r in report["rows"])


def test_json_of_failing_model_is_valid():
    result = _run("--model", "control-mlp", "--json")
    assert result.exit_code == EXIT_FAILURE
    assert json.loads(result.stdout)["passed"] is False


def test_checkpoint_path(tiny_checkpoint):
    result = _run("--model", str(tiny_checkpoint))
    assert result.exit_code == EXIT_OK, result.output


@pytest.mark.parametrize("spec", ["no/such/model.pt", "no-such-shipped-model"])
def test_model_that_cannot_be_loaded(spec):
    result = _run("--model", spec)
    assert result.exit_code == EXIT_BAD_MODEL
    assert "cannot load model" in " ".join(result.stderr.split())


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    result = _run("--model", str(bad))
    assert result.exit_code == EXIT_BAD_MODEL
    assert "not a readable se3mol checkpoint" in " ".join(result.stderr.split())


def test_help_lists_registry_and_marks_controls():
    result = runner.invoke(app, ["check-equivariance", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for name in model_names(include_controls=True):
        assert name in text
        if get_entry(name).control:
            assert f"{name} (control, not equivariant)" in text


def test_input_file(tmp_path):
    pytest.importorskip("se3mol.io")
    lines = []
    for m in default_molecules()[1:3]:
        lines += [str(m.n_atoms), m.name]
        for z, xyz in zip(m.z, m.pos, strict=True):
            lines.append(" ".join([chemical_symbols[int(z)], *(f"{c:.6f}" for c in xyz)]))
    path = tmp_path / "mols.xyz"
    path.write_text("\n".join(lines) + "\n")
    result = _run("--model", "egnn", "--input", str(path), "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["n_atoms"] == [6, 9]


def test_every_shipped_model_is_checked_the_score_model_included():
    from se3mol.pretrained import list_model_cards

    names = [c["name"] for c in list_model_cards()]
    assert "conformers-clofnet-qm9" in names
    for name in names:
        result = _run("--model", name, "--json", "--trials", "1")
        assert result.exit_code == EXIT_OK, (name, result.output)
        rows = json.loads(result.stdout)["rows"]
        assert rows and all(r["status"] in ("pass", "not expected") for r in rows)
        if name == "conformers-clofnet-qm9":  # per-atom scores rotate with the molecule; no reflections
            assert {(r["output"], r["kind"]) for r in rows} == {("score", "atom_vector")}
            assert [r["status"] for r in rows if r["transform"] == "reflection"] == ["not expected"]


def test_a_score_model_refuses_a_batch_without_noise_levels():
    from se3mol.graph import collate
    from se3mol.io import perceive_bonds
    from se3mol.pretrained import load_any, resolve_checkpoint

    model, _ = load_any(resolve_checkpoint("conformers-clofnet-qm9"))
    batch = collate([perceive_bonds(m) for m in default_molecules()[:2]], model.graph)
    with pytest.raises(ValueError, match="batch.sigma"):
        model(batch)
    with_sigma = model.with_default_inputs(batch, sigma=0.5)
    assert torch.allclose(model(with_sigma)["score"], model.score(batch, with_sigma.sigma))


def test_a_model_with_the_2d_fingerprint_and_charge_inputs_is_checked(tmp_path):
    # What a new `train --data` run makes (fingerprint and total charge as inputs) is checked like any model.
    table = tmp_path / "t.csv"
    table.write_text("smiles,y\n" + "".join(f"{'C' * k}{x},{k}\n" for k in range(1, 7) for x in ("O", "N")))
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(table), "--target", "y", "--set", "hidden=16", "--set", "layers=2",
                            "--epochs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    mols = tmp_path / "q.smi"
    mols.write_text("CCO ethanol\nCCC[NH3+] propylammonium\nCC(C)CO isobutanol\n")
    result = _run("--model", str(out / "best.pt"), "--input", str(mols), "--json")
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and {row["transform"] for row in report["rows"]} == set(TRANSFORMS)
