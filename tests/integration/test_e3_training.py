"""The spherical-harmonic families train end to end on real QM9 molecules (slow: minutes on 2 cores)."""

import json

import pytest
from typer.testing import CliRunner

from se3mol.cli.app import app

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.mark.parametrize("model", ["se3_transformer", "tfn"])
def test_train_limit_2000_two_epochs(model, tmp_path):
    out = tmp_path / model
    r = CliRunner().invoke(app, ["train", "--model", model, "--dataset", "qm9", "--target", "gap", "--limit", "2000",
                                 "--epochs", "2", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["test_mae"]["gap"] > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 epochs
