"""Layers shared by every model family: MLPs, radial bases, cutoffs and per-molecule reductions.

All reductions use the ``batch`` index (``index_add``), never a reshape, so batches may mix
molecules of different sizes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def mlp(sizes: list[int], act: type[nn.Module] = nn.SiLU, last_act: bool = False) -> nn.Sequential:
    """Linear layers of the given widths with ``act`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


class GaussianRBF(nn.Module):
    """Gaussians of the interatomic distance ``d [E]`` -> ``[E,num]`` (SchNet's expansion)."""

    def __init__(self, num: int = 32, r_max: float = 8.0) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, r_max, num))
        self.gamma = 0.5 / (r_max / (num - 1)) ** 2

    def forward(self, d: Tensor) -> Tensor:
        return torch.exp(-self.gamma * (d[:, None] - self.centers) ** 2)


def cosine_cutoff(d: Tensor, cutoff: float) -> Tensor:
    """Smooth envelope ``[E]`` that is 1 at d=0 and reaches 0 with zero slope at ``cutoff``."""
    return torch.where(d < cutoff, 0.5 * (torch.cos(d * math.pi / cutoff) + 1.0), torch.zeros_like(d))


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src [M,...]`` into ``dim_size`` bins given by ``index [M]``."""
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Mean of rows of ``src [M,...]`` per bin of ``index [M]`` (empty bins give 0)."""
    total = scatter_sum(src, index, dim_size)
    count = torch.bincount(index, minlength=dim_size).clamp(min=1).to(src.dtype)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def center_positions(pos: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Positions ``[N,3]`` minus their molecule's centroid."""
    return pos - scatter_mean(pos, batch, num_graphs)[batch]


class ElementEmbedding(nn.Module):
    """Learned embedding of the elements a model knows; refuses the ones it does not."""

    def __init__(self, elements: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.elements = tuple(int(e) for e in elements)
        table = torch.full((119,), -1, dtype=torch.long)
        table[list(self.elements)] = torch.arange(len(self.elements))
        self.register_buffer("lookup", table, persistent=False)
        self.embedding = nn.Embedding(len(self.elements), dim)

    def forward(self, z: Tensor) -> Tensor:
        idx = self.lookup[z]
        if (idx < 0).any():
            unknown = sorted(set(z[idx < 0].tolist()))
            raise ValueError(f"element(s) Z={unknown} not known to this model (knows {list(self.elements)})")
        return self.embedding(idx)
