"""A deliberately non-equivariant control model: an MLP that reads raw Cartesian coordinates.

It exists so that ``se3mol check-equivariance --model control-mlp`` can be seen to fail: a
checker that never fails proves nothing. Never use it for science.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from se3mol.graph import Batch
from se3mol.nn.entry import ModelEntry
from se3mol.nn.heads import AtomFeatures
from se3mol.nn.layers import ElementEmbedding, mlp


@dataclass
class ControlMLPConfig:
    """Width of the control MLP."""

    hidden: int = 64


class ControlMLP(nn.Module):
    """Per-atom MLP of (element embedding, raw x, y, z). Not invariant to anything but permutations."""

    vector_channels = 1

    def __init__(self, config: ControlMLPConfig, elements: tuple[int, ...], edge_attr_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        self.embed = ElementEmbedding(elements, config.hidden)
        self.net = mlp([config.hidden + 3, config.hidden, config.hidden])
        self.to_vec = nn.Linear(config.hidden, 3)

    def forward(self, batch: Batch) -> AtomFeatures:
        h = self.net(torch.cat([self.embed(batch.z), batch.pos], dim=-1))
        return AtomFeatures(scalars=h, vectors=self.to_vec(h)[:, None, :])


ENTRY = ModelEntry(
    name="control-mlp",
    config_cls=ControlMLPConfig,
    build=lambda cfg, elements, edge_attr_dim: ControlMLP(cfg, elements, edge_attr_dim),
    description="CONTROL, not equivariant: MLP on raw coordinates; shows that check-equivariance can fail",
    control=True,
)
