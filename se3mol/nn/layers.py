"""Layers shared by every model family: MLPs, radial bases, cutoffs and per-molecule reductions.

All reductions use an index (``Segments``: sparse products), never a reshape, so batches may mix
molecules of different sizes.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from se3mol.molecule import check_elements


def mlp(sizes: list[int], act: type[nn.Module] = nn.SiLU, last_act: bool = False) -> nn.Sequential:
    """Linear layers of the given widths with ``act`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


def negligible(dtype: torch.dtype) -> float:
    """The floor of :func:`exp_neg` and :func:`sigmoid_gate`: ``eps^2`` of the dtype (1.4e-14 in float32, 4.9e-32 in
    float64). Next to anything of order one it is invisible at the dtype's precision, and it is far enough above
    the subnormal range (below 1.2e-38 in float32) that its products with weights and gradients stay normal."""
    return torch.finfo(dtype).eps ** 2


def exp_neg(x: Tensor) -> Tensor:
    """``exp(-x)`` for ``x >= 0``, never below :func:`negligible` (``x`` is clamped before the exponential; the
    gradient is 0 where it is).

    A Gaussian of a distance far from its centre is ``exp`` of a large negative number: a subnormal float
    (below ``torch.finfo(dtype).tiny``). Many CPUs compute with subnormals ~100x slower, and ~5% of a distance
    expansion's features on QM9 were subnormal: the dense layer reading them, and its weight gradient, took most
    of a training step on the Intel Xeon where it was measured (``benchmarks/speed/subnormals.py``). Flooring them
    at their source needs no process-wide flush-to-zero flag, which a library must not set for its users, and a
    clamp costs less than the exponential it saves from underflowing.
    """
    return torch.exp(-x.clamp(max=-math.log(negligible(x.dtype))))


def sigmoid_gate(logit: Tensor) -> Tensor:
    """``sigmoid(logit)``, never below :func:`negligible` (an edge gated off: its message times the gate would
    otherwise be a subnormal float, see :func:`exp_neg`)."""
    return torch.sigmoid(logit.clamp(min=math.log(negligible(logit.dtype))))


class GaussianRBF(nn.Module):
    """Gaussians of the interatomic distance ``d [E]`` -> ``[E,num]`` (SchNet's expansion), floored at
    :func:`negligible` so that none is a subnormal float (:func:`exp_neg`)."""

    centers: Tensor  # [num] Angstrom

    def __init__(self, num: int = 32, r_max: float = 8.0) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, r_max, num))
        self.gamma = 0.5 / (r_max / (num - 1)) ** 2

    def forward(self, d: Tensor) -> Tensor:
        return exp_neg(self.gamma * (d[:, None] - self.centers) ** 2)


def cosine_cutoff(d: Tensor, cutoff: float) -> Tensor:
    """Smooth envelope ``[E]`` that is 1 at d=0 and reaches 0 with zero slope at ``cutoff``."""
    return torch.where(d < cutoff, 0.5 * (torch.cos(d * math.pi / cutoff) + 1.0), torch.zeros_like(d))


class Segments:
    """Rows ``[M,...]`` grouped into ``size`` bins by ``index [M]``: segment sums and gathers.

    The sum is a product with the sparse ``[size,M]`` incidence matrix (CSR) and its gradient a
    row gather; a gather's gradient is that sum again. Each output row is summed in a fixed order, so
    it is deterministic on every device by construction (``benchmarks/speed/aggregation.py`` compares its
    speed with ``index_add_`` and with the scatter that autograd makes for ``x[index]``, with
    deterministic algorithms off and on). Build one per index and reuse it across layers; both operations
    are differentiable twice (each is the other's gradient). Dtypes and devices without sparse
    products fall back to ``index_add_``.
    """

    def __init__(self, index: Tensor, size: int) -> None:
        self.index, self.size = index, int(size)
        self._csr: dict[torch.dtype, Tensor] = {}

    def matrix(self, dtype: torch.dtype) -> Tensor:
        """The ``[size,M]`` 0/1 incidence matrix in CSR form (cached per dtype)."""
        if dtype not in self._csr:
            idx = self.index
            counts = torch.bincount(idx, minlength=self.size)
            crow = torch.zeros(self.size + 1, dtype=torch.long, device=idx.device)
            torch.cumsum(counts, 0, out=crow[1:])
            col = torch.argsort(idx, stable=True)
            ones = torch.ones(idx.shape[0], dtype=dtype, device=idx.device)
            with warnings.catch_warnings():  # "sparse CSR support is in beta": sums of 0/1 matrices are not
                warnings.simplefilter("ignore", UserWarning)
                self._csr[dtype] = torch.sparse_csr_tensor(crow, col, ones, (self.size, idx.shape[0]),
                                                           check_invariants=False)
        return self._csr[dtype]

    def sparse_ok(self, t: Tensor) -> bool:
        return t.device.type in ("cpu", "cuda") and t.dtype in (torch.float32, torch.float64)

    def sum(self, src: Tensor) -> Tensor:
        """``out[b] = sum of src[m] over index[m] == b``: ``[M,...] -> [size,...]``."""
        if not self.sparse_ok(src):
            return src.new_zeros((self.size, *src.shape[1:])).index_add_(0, self.index, src)
        return _SegmentSum.apply(src, self)

    def gather(self, x: Tensor) -> Tensor:
        """``x[index]``: ``[size,...] -> [M,...]``."""
        if not self.sparse_ok(x):
            return x[self.index]
        return _Gather.apply(x, self)


def _csr_sum(seg: Segments, src: Tensor) -> Tensor:
    if src.numel() == 0:  # no rows (e.g. a batch of lone atoms: no edges) or no features
        return src.new_zeros((seg.size, *src.shape[1:]))
    flat = src.reshape(src.shape[0], math.prod(src.shape[1:]))
    with torch.autocast(src.device.type, enabled=False):  # autocast would cast the sparse product to 16 bits
        out = seg.matrix(src.dtype) @ flat.contiguous()
    return out.reshape(seg.size, *src.shape[1:])


class _SegmentSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, src: Tensor, seg: Segments) -> Tensor:
        ctx.seg = seg
        return _csr_sum(seg, src)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _Gather.apply(grad, ctx.seg), None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, seg: Segments) -> Tensor:
        ctx.seg = seg
        return x.index_select(0, seg.index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _SegmentSum.apply(grad, ctx.seg), None


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src [M,...]`` into ``dim_size`` bins given by ``index [M]``.

    One-off: for several sums or gathers over the same index, build one :class:`Segments`.
    """
    return Segments(index, dim_size).sum(src)


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

    lookup: Tensor  # [119] row of each element, -1 for unknown ones

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
            check_elements(z[idx < 0].tolist(), self.elements, "this model's")
        return self.embedding(idx)
