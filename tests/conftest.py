"""Shared fixtures: tiny models and checkpoints made on the fly, and paths to committed fixture files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from se3mol.molecule import Molecule

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def small_molecules() -> list[Molecule]:
    """Three molecules of different sizes with hand-written 3D geometries (water, ammonia, methanol)."""
    water = Molecule(z=[8, 1, 1], pos=[[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]], name="water")
    ammonia = Molecule(z=[7, 1, 1, 1], pos=[[0.0, 0.0, 0.1], [0.94, 0.0, -0.28], [-0.47, 0.81, -0.28],
                                             [-0.47, -0.81, -0.28]], name="ammonia")
    methanol = Molecule(
        z=[6, 8, 1, 1, 1, 1],
        pos=[[-0.05, 0.66, 0.0], [-0.05, -0.76, 0.0], [-1.09, 0.97, 0.0], [0.44, 1.08, 0.89],
             [0.44, 1.08, -0.89], [0.87, -1.03, 0.0]],
        bonds=[[0, 1], [0, 2], [0, 3], [0, 4], [1, 5]], name="methanol")
    return [water, ammonia, methanol]


@pytest.fixture
def molecules() -> list[Molecule]:
    return small_molecules()


def tiny_config(name: str) -> dict:
    """The smallest config of a registered family that still exercises every layer."""
    from dataclasses import fields

    from se3mol.nn.registry import get_entry

    names = {f.name for f in fields(get_entry(name).config_cls)}
    cfg = {}
    if "hidden" in names:
        cfg["hidden"] = 16
    if "layers" in names:
        cfg["layers"] = 2
    return cfg


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An (untrained, but complete) se3mol checkpoint of a tiny EGNN predicting gap and mu."""
    from se3mol.nn import build_model
    from se3mol.targets import get_target
    from se3mol.training.checkpoint import atomic_save, model_checkpoint

    torch.manual_seed(0)
    model = build_model("egnn", [get_target("gap"), get_target("mu")], {"hidden": 16, "layers": 2})
    model.heads.mean[0] = 6800.0
    model.heads.std[0] = 1300.0
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    atomic_save(model_checkpoint(model, domain={"elements": [1, 6, 7, 8, 9], "max_heavy_atoms": 9,
                                                "max_atoms": 29, "charge": 0}), path)
    return path


def random_rotation(seed: int = 0) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return torch.from_numpy(q)
