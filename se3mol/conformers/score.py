"""Denoising score matching for the conformer score model: the noise schedule, the Kabsch-aligned target, the
loss, and the model's checkpoint. The network itself is :class:`se3mol.nn.score.ScoreModel` (re-exported here).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from se3mol.checkpoint import module_checkpoint
from se3mol.graph import Batch
from se3mol.nn.layers import center_positions, scatter_sum
from se3mol.nn.score import MAX_DEGREE, ScoreModel, ScoreModelConfig, recorded_config

__all__ = ["LEVELS", "MAX_DEGREE", "SIGMA_MAX", "SIGMA_MIN", "ScoreModel", "ScoreModelConfig", "dsm_loss",
           "kabsch_align", "noise_levels", "recorded_config", "score_checkpoint"]


#: The noise schedule of ConfGF and ClofNet, the one the score model is trained on and sampled with: geometric,
#: from ``SIGMA_MAX`` down to ``SIGMA_MIN`` Angstrom in ``LEVELS`` levels (:func:`noise_levels`).
SIGMA_MAX, SIGMA_MIN, LEVELS = 10.0, 0.01, 50


def noise_levels(sigma_max: float = SIGMA_MAX, sigma_min: float = SIGMA_MIN, levels: int = LEVELS) -> Tensor:
    """Geometric noise levels from ``sigma_max`` down to ``sigma_min`` (Angstrom) ``[levels]`` (float64)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), levels, dtype=torch.float64))


def kabsch_align(x: Tensor, y: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """``x [N,3]`` rigidly moved (rotation + translation, per molecule) onto ``y [N,3]`` in least squares."""
    xc = center_positions(x, batch, num_graphs)
    yc = center_positions(y, batch, num_graphs)
    cov = scatter_sum(xc[:, :, None] * yc[:, None, :], batch, num_graphs).double()  # [B,3,3]
    u, _, vt = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ u.transpose(1, 2)))  # [B] avoid reflections
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    rot = (vt.transpose(1, 2) @ fix @ u.transpose(1, 2)).to(x.dtype)  # [B,3,3]
    return torch.einsum("nij,nj->ni", rot[batch], xc) + (y - yc)


def dsm_loss(model: ScoreModel, batch: Batch, sigmas: Tensor, generator: torch.Generator) -> Tensor:
    """Denoising score matching loss on the coordinates of ``batch``, one noise level per molecule.

    For clean ``x`` and ``x~ = x + sigma eps`` (``eps`` standard normal with its per-molecule mean
    removed: translations carry no information), the target score is ``-(x~ - x*) / sigma^2`` where
    ``x*`` is ``x`` rigidly aligned onto ``x~`` (Kabsch). An equivariant network cannot know the
    orientation of the clean molecule, so the aligned target is the part of the perturbation it can
    learn. The loss is weighted by ``sigma^2`` (NCSN): ``|sigma * score + (x~ - x*) / sigma|^2``, averaged
    over the atoms of each molecule and then over molecules. Levels are drawn uniformly from ``sigmas``.
    """
    b = batch.num_graphs
    level = torch.randint(len(sigmas), (b,), generator=generator)
    sigma = sigmas[level].to(batch.pos)  # [B]
    eps = torch.randn(batch.pos.shape, generator=generator).to(batch.pos)  # [N,3]
    eps = center_positions(eps, batch.batch, b)
    noisy = batch.pos + sigma[batch.batch, None] * eps
    target = kabsch_align(batch.pos, noisy, batch.batch, b)
    pred = model.score(batch.replace(pos=noisy), sigma)  # [N,3]
    err = (sigma[batch.batch, None] * pred + (noisy - target) / sigma[batch.batch, None]).pow(2).sum(-1)  # [N]
    count = torch.bincount(batch.batch, minlength=b).to(err)
    return (scatter_sum(err, batch.batch, b) / count).mean()


def score_checkpoint(model: ScoreModel, **extra: Any) -> dict[str, Any]:
    """Checkpoint dict of a score model (same file format and safety as property models)."""
    return module_checkpoint(model, **extra)
