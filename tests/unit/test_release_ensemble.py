"""Shipped ensembles: releasing ``se3mol train --ensemble N`` with a calibrated spread, and reading it back."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from se3mol.cli.app import app
from se3mol.prediction import Predictor
from se3mol.pretrained import resolve_checkpoint, resolve_checkpoints, std_scale
from se3mol.release import release
from se3mol.targets import get_target
from se3mol.training.metrics import calibration, fit_std_scale

runner = CliRunner()


def test_std_scale_turns_a_too_narrow_spread_into_calibrated_intervals():
    gen = torch.Generator().manual_seed(0)
    n = 20000
    sigma = 0.5 + 1.5 * torch.rand(n, 1, generator=gen, dtype=torch.float64)  # heteroscedastic true errors
    ref = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    pred = ref + sigma * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    spread = sigma / 3  # an ensemble three times too confident
    targets = [get_target("gap")]
    scale = fit_std_scale(pred[: n // 2], spread[: n // 2], ref[: n // 2], targets)
    assert scale["gap"] == pytest.approx(3.0, rel=0.05)
    raw = calibration(pred[n // 2:], spread[n // 2:], ref[n // 2:], targets)["gap"]
    fixed = calibration(pred[n // 2:], spread[n // 2:], ref[n // 2:], targets, scale)["gap"]
    assert raw["within_1std"] == pytest.approx(0.261, abs=0.02)  # P(|z| < 1/3) for a normal z
    assert fixed["within_1std"] == pytest.approx(0.683, abs=0.02)
    assert fixed["within_2std"] == pytest.approx(0.954, abs=0.01)
    assert fixed["spearman_std_abs_error"] > 0.2 and fixed["n"] == n // 2  # larger spread, larger errors
    labels = ref[n // 2:].clone()
    labels[:10] = float("nan")  # unlabelled molecules do not count
    assert calibration(pred[n // 2:], spread[n // 2:], labels, targets)["gap"]["n"] == n // 2 - 10


def test_released_ensemble_predicts_with_its_calibrated_spread(tmp_path, monkeypatch, molecules):
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--dataset", "qm9", "--target", "gap", "--target", "homo", "--limit", "300",
                            "--epochs", "1", "--ensemble", "2", "--set", "hidden=16", "--set", "layers=1",
                            "--out", str(run)])
    assert r.exit_code == 0, r.stderr
    models = tmp_path / "models"
    models.mkdir()
    (models / "ens.member-7.pt").write_bytes(b"stale member of an earlier release")
    card = release(run, "ens", "se3mol train ... --ensemble 2", models)
    assert sorted(p.name for p in models.iterdir()) == ["ens.json", "ens.member-1.pt", "ens.pt"]
    assert card["members"] == ["ens.pt", "ens.member-1.pt"] and card["ensemble_size"] == 2
    assert card["test_n"] == 300 and set(card["std_scale"]) == {"gap", "homo"}
    assert all(s > 0 for s in card["std_scale"].values())
    for kind in ("test_raw", "test_calibrated"):
        assert 0 <= card["calibration"][kind]["gap"]["within_1std"] <= card["calibration"][kind]["gap"]["within_2std"]
    assert len(card["member_test_mae"]) == 2 and json.loads((models / "ens.json").read_text()) == card
    trained_on = json.loads((run / "member-0" / "results.json").read_text())["hardware"]
    assert card["hardware"] == trained_on and "threads, torch" in trained_on  # where it trained, not released

    monkeypatch.setenv("SE3MOL_MODELS", str(models))
    assert resolve_checkpoints("ens") == [models / "ens.pt", models / "ens.member-1.pt"]
    assert resolve_checkpoint("ens") == models / "ens.pt"  # where one model is read: the first member
    assert std_scale("ens") == card["std_scale"] and std_scale(str(run)) is None
    shipped = list(Predictor.from_specs(["ens"]).predict_molecules(molecules[:3]))
    raw = list(Predictor.from_specs([str(run)]).predict_molecules(molecules[:3]))
    for a, b in zip(shipped, raw, strict=True):
        assert a["gap_meV"] == pytest.approx(b["gap_meV"])
        assert a["gap_meV_std"] == pytest.approx(b["gap_meV_std"] * card["std_scale"]["gap"])
        assert a["homo_meV_std"] == pytest.approx(b["homo_meV_std"] * card["std_scale"]["homo"])
    with pytest.raises(ValueError, match="std_scale names targets"):
        Predictor(Predictor.from_specs([str(run)]).models, std_scale={"mu": 2.0})
    listing = runner.invoke(app, ["models"])
    assert listing.exit_code == 0 and "egnn x2" in listing.stdout
    (models / "ens.member-1.pt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks member checkpoints"):
        resolve_checkpoints("ens")
