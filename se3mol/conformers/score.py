"""The conformer score model: ClofNet predicting per-atom scores, conditioned on the noise level.

``ScoreModel.score(batch, sigma) -> [N,3]``, an estimate of ``grad_x log p_sigma(x)`` (1/Angstrom) of
the noised coordinate distribution at noise level ``sigma`` (Angstrom), one level per molecule
``sigma [B]``. Under the one model contract, ``ScoreModel(batch) -> {"score": [N,3]}`` (kind
``atom_vector``) reads the levels from ``batch.sigma``, so ``se3mol check-equivariance`` checks it too.
The network outputs ``sigma * score``, which has unit scale at every level (NCSN's parameterisation).
The molecular graph is :class:`~se3mol.graph.GraphConfig` ``"hops"``: bonds and the
pairs 2 and 3 bonds apart (ConfGF's graph; ``max_hops=None`` takes every pair of atoms), typed by bond type,
or by hop order 2, 3 or further; hydrogens are explicit atoms.
Atoms also know their number of bonded neighbours.

Training is denoising score matching (:func:`dsm_loss`), sampling is annealed Langevin dynamics
(:mod:`se3mol.conformers.sampler`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from se3mol.graph import NUM_BOND_TYPES, Batch, GraphConfig
from se3mol.nn.clofnet import ClofNet, ClofNetConfig
from se3mol.nn.heads import ATOM_VECTOR
from se3mol.nn.layers import center_positions, mlp, scatter_sum
from se3mol.nn.model import Model

MAX_DEGREE = 6


@dataclass
class ScoreModelConfig:
    """Score model hyper-parameters (the ClofNet inside, and the noise-level embedding).

    Attributes:
        hidden, layers, num_rbf, r_max, frame_features: as in :class:`~se3mol.nn.clofnet.ClofNetConfig`.
        sigma_features: Fourier features of ``log sigma`` fed to the noise-level embedding.
        max_hops: 3 (the shipped model): only bonds and 2- and 3-hop pairs are edges (ConfGF's graph), 57% of
            the pairs of QM9's test molecules with hydrogens, and a forward pass 1.5x faster than on every pair
            (`benchmarks/speed/score_graph_speed.py`); ``None``: every pair of atoms (score-model checkpoints written
            before this option existed do not record it, and load with ``None``, as they were trained).
    """

    hidden: int = 128
    layers: int = 4
    num_rbf: int = 32
    r_max: float = 10.0
    frame_features: int = 32
    sigma_features: int = 16
    max_hops: int | None = 3


class ScoreModel(Model):
    """ClofNet score network for conformer generation (see the module docstring)."""

    kind = "conformer_score"

    def __init__(self, config: ScoreModelConfig, elements: tuple[int, ...]) -> None:
        super().__init__()
        c = self.config = config
        self.elements = tuple(int(e) for e in elements)
        self.graph = GraphConfig("hops", max_hops=c.max_hops)
        self.net = ClofNet(ClofNetConfig(c.hidden, c.layers, c.num_rbf, c.r_max, None, c.frame_features),
                           self.elements, self.graph.edge_attr_dim)
        self.register_buffer("freqs", torch.arange(1, c.sigma_features // 2 + 1, dtype=torch.float32) * math.pi / 4)
        self.sigma_embed = mlp([c.sigma_features, c.hidden, c.hidden])
        self.degree_embed = nn.Embedding(MAX_DEGREE + 1, c.hidden)

    @property
    def representation(self) -> nn.Module:
        """The ClofNet network (SE(3)- but not reflection-equivariant: the equivariance check reads this)."""
        return self.net

    def output_kinds(self) -> dict[str, str]:
        return {"score": ATOM_VECTOR}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """The model contract: ``{"score": [N,3]}`` at the noise levels ``batch.sigma [B]`` (Angstrom)."""
        if batch.sigma is None:
            raise ValueError("the score model needs the noise level of each molecule in batch.sigma [B]")
        return {"score": self.score(batch, batch.sigma)}

    def with_default_inputs(self, batch: Batch, sigma: float = 1.0) -> Batch:
        """``batch`` with a noise level of ``sigma`` Angstrom for every molecule (what a check runs on)."""
        return batch.replace(sigma=torch.full((batch.num_graphs,), sigma, dtype=batch.pos.dtype,
                                              device=batch.pos.device))

    def score(self, batch: Batch, sigma: Tensor) -> Tensor:
        """Scores ``[N,3]`` (1/Angstrom) of the atoms of ``batch`` at noise levels ``sigma [B]`` (Angstrom)."""
        ls = torch.log(sigma.to(batch.pos.dtype))[:, None] * self.freqs.to(batch.pos.dtype)  # [B,F/2]
        cond = self.sigma_embed(torch.cat([torch.sin(ls), torch.cos(ls)], dim=-1))[batch.batch]  # [N,H]
        bonded = batch.edge_attr[:, :NUM_BOND_TYPES].sum(-1)  # [E] 1 for bonds
        degree = scatter_sum(bonded, batch.edge_index[0], batch.num_atoms).round().long().clamp(max=MAX_DEGREE)
        feats = self.net(batch, cond + self.degree_embed(degree))
        return feats.vectors[:, 0, :] / sigma.to(batch.pos.dtype)[batch.batch, None]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": "clofnet-score", "config": asdict(self.config),
                "elements": list(self.elements), "graph": self.graph.to_dict()}

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> ScoreModel:
        if d.get("kind") != cls.kind:
            raise ValueError(f"checkpoint holds a {d.get('kind', 'property')!r} model, not a conformer score model")
        return cls(ScoreModelConfig(**recorded_config(d)), tuple(d["elements"]))


def recorded_config(description: dict[str, Any]) -> dict[str, Any]:
    """The :class:`ScoreModelConfig` settings of a checkpoint's model description. Checkpoints written before
    ``max_hops`` existed do not record it: they were trained on every pair (``None``), not on the default."""
    return {"max_hops": None, **description["config"]}


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
    from se3mol.training.checkpoint import module_checkpoint

    return module_checkpoint(model, **extra)
