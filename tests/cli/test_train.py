"""se3mol train end to end on a handful of QM9 molecules."""

import json

import pytest
from typer.testing import CliRunner

from se3mol.cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_train_writes_run_and_reports_test_mae(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--model", "egnn", "--target", "gap", "--target", "mu", "--limit", "40",
                            "--epochs", "1", "--batch-size", "20", "--set", "hidden=16", "--set", "layers=2",
                            "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(result["test_mae"]) == {"gap", "mu"}
    assert "Test metrics" in r.stderr and "test RMSE" in r.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_config"] == {"hidden": 16, "layers": 2} and cfg["targets"] == ["gap", "mu"]
    # --resume of a finished run with a changed setting is refused, naming the setting
    r2 = runner.invoke(app, ["train", "--resume", str(out), "--lr", "0.1"])
    assert r2.exit_code == 1 and "lr: 0.0005 -> 0.1" in r2.stderr
    # --config re-runs it: same settings, same seed, same result
    r3 = runner.invoke(app, ["train", "--config", str(out / "config.json"), "--out", str(tmp_path / "again")])
    assert r3.exit_code == 0, r3.stderr
    again = json.loads(r3.stdout.strip().splitlines()[-1])
    assert again["test_mae"] == result["test_mae"]
    cfg2 = json.loads((tmp_path / "again" / "config.json").read_text())
    assert {k: v for k, v in cfg2.items() if k != "out"} == {k: v for k, v in cfg.items() if k != "out"}


def test_unknown_target_and_model_are_clear_errors(tmp_path):
    r = runner.invoke(app, ["train", "--target", "nope", "--limit", "10", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "unknown target 'nope'" in r.stderr
    r = runner.invoke(app, ["train", "--model", "nope", "--limit", "10", "--out", str(tmp_path / "y")])
    assert r.exit_code == 1 and "unknown model 'nope'" in r.stderr


def test_unavailable_device_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = runner.invoke(app, ["train", "--device", "cuda", "--limit", "10", "--out", str(tmp_path / "z")])
    assert r.exit_code == 1 and "no CUDA device" in r.stderr


def test_nproc_under_torchrun_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it in its workers
    r = runner.invoke(app, ["train", "--nproc", "2", "--limit", "10", "--out", str(tmp_path / "n")])
    assert r.exit_code == 2 and "under torchrun, leave it out" in r.stderr
    assert not (tmp_path / "n").exists()


def test_logged_training_rate_is_a_number_from_the_first_line(capsys, monkeypatch):
    """Without a terminal the progress view logs a line every 100 steps; the first one used to say 'nan steps/s'
    (no earlier line to time from) and later ones timed across epochs."""
    from se3mol.cli import train as train_cli

    clock = iter(float(t) for t in range(0, 10_000, 1))
    monkeypatch.setattr(train_cli.time, "perf_counter", lambda: next(clock))
    view = train_cli._ProgressView(epochs=2, enabled=False)
    for epoch in (1, 2):
        for step in range(1, 201):
            view({"event": "step", "epoch": epoch, "step": step, "steps": 200, "loss": 0.5})
    lines = [line for line in capsys.readouterr().err.splitlines() if "steps/s" in line]
    assert len(lines) == 4
    assert all("(1.00 steps/s)" in line for line in lines), lines
