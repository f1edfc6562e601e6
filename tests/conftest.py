"""Shared fixtures: small molecules, QM9, and a tiny checkpoint made on the fly.

Plain helpers (paths to the committed fixture files, molecules, configs, rotations) are in ``tests/helpers``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from se3mol.molecule import Molecule
from tests.helpers import small_molecules


@pytest.fixture
def molecules() -> list[Molecule]:
    return small_molecules()


@pytest.fixture(scope="module")
def mols() -> list[Molecule]:
    """The equivariance checker's default molecules (different sizes, no symmetry), as it uses them."""
    from se3mol.equivariance import default_molecules

    return default_molecules()


@pytest.fixture(scope="module")
def qm9():
    """The whole QM9 set from qm9pack (parsed once, then read from the user cache)."""
    from se3mol.data import load_qm9

    return load_qm9(verbose=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An (untrained, but complete) se3mol checkpoint of a tiny EGNN predicting gap and mu."""
    from se3mol.checkpoint import atomic_save, model_checkpoint
    from se3mol.nn import build_model
    from se3mol.targets import get_target

    torch.manual_seed(0)
    model = build_model("egnn", [get_target("gap"), get_target("mu")], {"hidden": 16, "layers": 2})
    model.heads.mean[0] = 6800.0
    model.heads.std[0] = 1300.0
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    atomic_save(model_checkpoint(model, domain={"elements": [1, 6, 7, 8, 9], "max_heavy_atoms": 9,
                                                "max_atoms": 29, "charge": 0}), path)
    return path
