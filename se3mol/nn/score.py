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

Training is denoising score matching (:func:`se3mol.conformers.score.dsm_loss`), sampling is annealed Langevin
dynamics (:mod:`se3mol.conformers.sampler`). The network lives here, beside the other model families, so that
loading a checkpoint of any kind (:mod:`se3mol.pretrained`) needs nothing of the conformer application.
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
from se3mol.nn.layers import mlp, scatter_sum
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
    freqs: Tensor  # [F/2] frequencies of the noise level's sinusoidal embedding

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
        if batch.edge_attr is None:
            raise ValueError("the score model needs a hops graph with bond types (edge_attr): collate on model.graph")
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
