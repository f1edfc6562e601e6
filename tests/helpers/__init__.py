"""Plain helpers shared by the tests: paths, small hand-written molecules, tiny model configs, rotations,
a pickle that runs code.

Fixtures live in ``tests/conftest.py``; helpers for labelled data files in ``tests/helpers/labelled.py``;
helpers that run ``python -m se3mol train`` as real processes in ``tests/helpers/runs.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from se3mol.molecule import Molecule

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"


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


def random_orthogonal(seed: int, proper: bool = True) -> np.ndarray:
    """A random 3x3 orthogonal matrix ``[3,3]``, Haar-distributed: a rotation, or with ``proper=False`` a
    rotation times a reflection (determinant -1)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q


def random_rotation(seed: int = 0) -> torch.Tensor:
    """A random proper rotation ``[3,3]`` as a float64 tensor."""
    return torch.from_numpy(random_orthogonal(seed))


class CodeRunningPickle:
    """A crafted checkpoint's payload: unpickling it runs ``touch PWNED_BY_CHECKPOINT`` in the working folder."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))
