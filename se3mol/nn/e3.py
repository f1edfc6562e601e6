"""Layers shared by the e3nn families (TFN, SE(3)-Transformer): edges, kernels, readout, exact constants.

Features are e3nn irreps tensors ``[N, irreps.dim]`` of *polar* irreps ``0e + 1o + 2e + 3o ...``
(degree ``l`` with parity ``(-1)^l``, see :func:`polar_irreps`): true scalars, polar vectors and
symmetric traceless tensors, so every layer here is E(3)-equivariant (reflections included).
Tensor-product paths into other parities (the pseudovector ``1e`` of a cross product, say) are left
out; a model built from these layers is therefore blind to chirality, as an E(3)-invariant model must be.

- :class:`EdgeEmbedding`: ``batch -> EdgeFeatures``: spherical harmonics of ``x_j - x_i`` (e3nn,
  ``normalize=True``, ``normalization="component"``), a Gaussian expansion of the distance with bond-type
  one-hots appended on bond graphs, and the smooth cosine envelope when a cutoff is set.
- :class:`EquivariantKernel`: the per-edge message ``W(x_j - x_i) f_j``, an e3nn tensor product of the
  neighbour's features with the edge's spherical harmonics, weighted per edge by :class:`RadialNetwork`.
- :class:`SphericalBasis` and :class:`FusedKernels`: the same full-mixing kernels computed basis first, the
  way NVIDIA's optimised SE(3)-Transformer does: the Clebsch-Gordan x spherical-harmonics basis of every
  edge is built once per forward pass (it depends on geometry only) and shared by every layer; features
  are contracted with it first; the radial weights then mix channels in one batched matmul per output
  degree, several kernels (keys and values) sharing that contraction, in chunks of edges so that the
  ``[E, paths x C_in x C_out]`` radial weights are never all held at once.
- :class:`AtomFeatureReadout`: irreps features -> :class:`~se3mol.nn.heads.AtomFeatures` in the Cartesian
  ``(x, y, z)`` frame of ``pos``.
- :class:`E3Module`: base class that keeps e3nn's Clebsch-Gordan buffers exact under dtype casts.

No spherical harmonics or Clebsch-Gordan coefficients are written by hand: all come from e3nn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, cast

import torch
from e3nn import o3
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from se3mol.graph import Batch
from se3mol.nn.heads import AtomFeatures
from se3mol.nn.layers import GaussianRBF, cosine_cutoff, mlp, scatter_sum


def polar_irreps(mul: int, max_degree: int) -> o3.Irreps:
    """``mul`` channels of every degree ``0..max_degree``, each with the parity ``(-1)^l`` of a polar tensor.

    >>> polar_irreps(8, 3)
    8x0e+8x1o+8x2e+8x3o
    """
    return o3.Irreps([(mul, (degree, (-1) ** degree)) for degree in range(max_degree + 1)])


def validate_e3_config(family: str, *, hidden: int, layers: int, max_degree: int, num_rbf: int, r_max: float,
                       cutoff: float | None) -> None:
    """Raise ``ValueError`` naming every setting of an e3nn family's config that cannot work."""
    problems = []
    if hidden < 1:
        problems.append(f"hidden must be at least 1 (channels per degree), got {hidden}")
    if layers < 1:
        problems.append(f"layers must be at least 1, got {layers}")
    if max_degree < 1:
        problems.append(f"max_degree must be at least 1 (degree 1 carries the atomic vectors), got {max_degree}")
    if num_rbf < 2:
        problems.append(f"num_rbf must be at least 2, got {num_rbf}")
    if not r_max > 0:
        problems.append(f"r_max must be positive (Angstrom), got {r_max}")
    if cutoff is not None and not cutoff > 0:
        problems.append(f"cutoff must be positive (Angstrom) or None, got {cutoff}")
    if problems:
        raise ValueError(f"invalid {family} config: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------------
# Exact constants


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    outer = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(outer)


class E3Module(nn.Module):
    """Base class of representations built from e3nn layers; keeps their constants exact in any dtype.

    e3nn's tensor products hold their Clebsch-Gordan coefficients as buffers made in the default dtype.
    A model built in float32 and then cast to float64 (as the equivariance check does) would carry
    float32-rounded coefficients and be equivariant only to ~1e-7. Subclasses therefore build their
    layers inside ``with self.exact_constants():``. The layers are made in float64, every floating
    *buffer* then present is remembered in float64 (buffers of these models are constants: coefficients,
    masks, radial centres; a layer with running statistics, such as batch norm, must not be built
    there), the module is cast back to the default dtype, and every later cast (``.double()``,
    ``.to(...)``) or ``load_state_dict`` re-derives those buffers from the float64 copies.
    """

    reflection_equivariant = True
    vector_channels: int = 0
    rank2_channels: int = 0

    @contextmanager
    def exact_constants(self) -> Iterator[None]:
        """Build the layers made inside this block in float64 and keep their buffers exact from then on."""
        outer = torch.get_default_dtype()
        with _default_dtype(torch.float64):
            yield
        self._exact_constants = {name: buf.detach().clone() for name, buf in self.named_buffers()
                                 if buf.is_floating_point()}
        self.register_load_state_dict_post_hook(_restore_after_load)
        self.to(outer)

    def _restore_constants(self) -> None:
        for name, exact in getattr(self, "_exact_constants", {}).items():
            owner_name, _, leaf = name.rpartition(".")
            owner = self.get_submodule(owner_name)
            current = owner._buffers.get(leaf)
            if current is not None and current.is_floating_point():
                # A copy: the float64 original must not be the buffer that load_state_dict copies into.
                owner._buffers[leaf] = exact.to(device=current.device, dtype=current.dtype, copy=True)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> E3Module:
        super()._apply(fn, recurse)
        self._restore_constants()
        return self


def _restore_after_load(module: E3Module, incompatible_keys: Any) -> None:
    module._restore_constants()


# ---------------------------------------------------------------------------------------------------
# Edges


@dataclass
class EdgeFeatures:
    """What every kernel needs to know about the edges of a batch.

    Attributes:
        sh: spherical harmonics of the unit vector from receiver ``i`` to neighbour ``j``, ``[E, sh_dim]``.
        radial: invariant edge features ``[E, F]``: Gaussian RBF of the distance (+ bond-type one-hots).
        envelope: smooth cutoff ``[E]`` in ``[0, 1]`` (0 at and beyond the cutoff), or ``None`` without one.
        basis: per input degree ``l``, the Clebsch-Gordan x spherical-harmonics basis ``[E, cols, 2l+1]`` of
            :class:`SphericalBasis` (empty unless a model that uses :class:`FusedKernels` fills it in).
        pairing: ``(order [E], n)`` of :func:`pair_reverse_edges`, or ``None``: lets :class:`FusedKernels`
            compute the radial weights of an edge and its reverse once.
    """

    sh: Tensor
    radial: Tensor
    envelope: Tensor | None
    basis: list[Tensor] = field(default_factory=list)
    pairing: tuple[Tensor, int] | None = None


class EdgeEmbedding(nn.Module):
    """``batch -> EdgeFeatures`` from ``rel = pos[j] - pos[i]`` (receiver ``i`` = ``edge_index[0]``).

    ``edge_attr_dim > 0`` appends the batch's ``edge_attr`` (one-hot bond types) to the radial features.
    """

    def __init__(self, max_degree: int, num_rbf: int, r_max: float, cutoff: float | None,
                 edge_attr_dim: int = 0) -> None:
        super().__init__()
        self.irreps_sh = o3.Irreps.spherical_harmonics(max_degree)
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.rbf = GaussianRBF(num_rbf, r_max)
        self.cutoff = cutoff
        self.edge_attr_dim = edge_attr_dim
        self.radial_dim = num_rbf + edge_attr_dim

    def forward(self, batch: Batch) -> EdgeFeatures:
        i, j = batch.edge_index
        rel = batch.pos[j] - batch.pos[i]  # [E,3]
        d = rel.norm(dim=-1)  # [E]
        radial = self.rbf(d)  # [E,num_rbf]
        if self.edge_attr_dim:
            if batch.edge_attr is None or batch.edge_attr.shape[-1] != self.edge_attr_dim:
                got = None if batch.edge_attr is None else batch.edge_attr.shape[-1]
                raise ValueError(f"this model was built for {self.edge_attr_dim} edge features per edge (bond "
                                 f"types of a bond graph) but the batch has {got}")
            radial = torch.cat([radial, batch.edge_attr.to(radial.dtype)], dim=-1)  # [E,F]
        envelope = cosine_cutoff(d, self.cutoff) if self.cutoff else None
        return EdgeFeatures(sh=self.sh(rel), radial=radial, envelope=envelope)


class RadialNetwork(nn.Module):
    """Invariant edge features ``[E,F]`` -> per-edge tensor-product weights ``[E,W]``, times the envelope."""

    def __init__(self, radial_dim: int, hidden: int, weight_numel: int) -> None:
        super().__init__()
        self.net = mlp([radial_dim, hidden, hidden, weight_numel])

    def forward(self, radial: Tensor, envelope: Tensor | None) -> Tensor:
        w = self.net(radial)  # [E,W]
        return w if envelope is None else w * envelope[:, None]


class EquivariantKernel(nn.Module):
    """Per-edge message ``W(x_j - x_i) f_j`` ``[E, irreps_out.dim]``: ``f_j`` (tensor) ``Y(x_j - x_i)``.

    Each path ``l_in x l_f -> l_out`` is coupled by e3nn's Clebsch-Gordan coefficients and weighted by a
    learned function of the distance (:class:`RadialNetwork`), so the kernel is equivariant by construction.

    ``mixing="full"``: every input channel reaches every output channel with its own radial weight
    (``o3.FullyConnectedTensorProduct``); ``irreps_out`` is as given. Costs ``paths x C_in x C_out`` radial
    weights per edge. :class:`FusedKernels` computes the same map faster (the SE(3)-Transformer's keys and
    values); this plain form is the reference it is tested against.

    ``mixing="channelwise"``: each channel is filtered on its own (e3nn ``"uvu"`` paths), as in Tensor Field
    Networks' point convolution, whose channels are then mixed by a self-interaction on the atoms.
    ``irreps_out`` only selects which output irreps are kept; ``self.irreps_out`` is one block per path
    (``paths x C`` weights per edge).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps, radial_dim: int,
                 radial_hidden: int, mixing: Literal["full", "channelwise"] = "full") -> None:
        super().__init__()
        irreps_in, irreps_sh, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_sh), o3.Irreps(irreps_out)
        if mixing == "full":
            self.tp = o3.FullyConnectedTensorProduct(irreps_in, irreps_sh, irreps_out, shared_weights=False,
                                                     internal_weights=False)
        elif mixing == "channelwise":
            blocks: list[tuple[int, o3.Irrep]] = []
            instructions: list[tuple[int, int, int, str, bool]] = []
            for a, (mul, ir_in) in enumerate(irreps_in):
                for b, (_, ir_sh) in enumerate(irreps_sh):
                    for ir in ir_in * ir_sh:
                        if ir in irreps_out:
                            instructions.append((a, b, len(blocks), "uvu", True))
                            blocks.append((mul, ir))
            self.tp = o3.TensorProduct(irreps_in, irreps_sh, o3.Irreps(blocks), instructions,
                                       shared_weights=False, internal_weights=False)
        else:
            raise ValueError(f"unknown kernel mixing {mixing!r}; choose 'full' or 'channelwise'")
        self.irreps_out = self.tp.irreps_out
        self.radial = RadialNetwork(radial_dim, radial_hidden, self.tp.weight_numel)

    def forward(self, f_j: Tensor, edges: EdgeFeatures) -> Tensor:
        return self.tp(f_j, edges.sh, self.radial(edges.radial, edges.envelope))  # [E, irreps_out.dim]


class SphericalBasis(nn.Module):
    """Per-edge Clebsch-Gordan x spherical-harmonics basis ``sh [E, sh_dim] -> [B_0, ..., B_L]``.

    For input degree ``l_in``, ``B_{l_in} [E, cols(l_in), 2 l_in + 1]`` holds, for every output degree
    ``l_out`` and filter degree ``l_f`` of a polar path ``l_in x l_f -> l_out`` (all degrees ``<= L``), one row
    (called a column of the basis in ``columns``) per ``(l_out, l_f, k)``:

        B[e, (l_out, l_f, k), i] = sum_m C^{l_in l_f l_out}_{i m k} Y^{l_f}_m(x_j - x_i)

    with ``C = o3.wigner_3j`` and ``Y`` e3nn's spherical harmonics, columns ordered by ``l_out``, then
    ``l_f``, then ``k``. It depends on the geometry only, so a model computes it once per forward pass
    and every layer's :class:`FusedKernels` reuses it: ``B_{l_in} @ f_j [E, 2 l_in + 1, C]`` is then all
    of the Clebsch-Gordan work of a layer.
    """

    def __init__(self, max_degree: int) -> None:
        super().__init__()
        self.max_degree = max_degree
        self.irreps_sh = o3.Irreps.spherical_harmonics(max_degree)
        sh_slices = self.irreps_sh.slices()
        # columns[l_in][l_out] = (first column, filter degrees in order)
        self.columns: list[dict[int, tuple[int, list[int]]]] = []
        for l_in in range(max_degree + 1):
            blocks, cols = {}, 0
            for l_out in range(max_degree + 1):
                filters = polar_filter_degrees(l_in, l_out, max_degree)
                blocks[l_out] = (cols, filters)
                cols += len(filters) * (2 * l_out + 1)
            self.columns.append(blocks)
            cg = torch.zeros(self.irreps_sh.dim, cols, 2 * l_in + 1, dtype=torch.float64)  # [sh_dim, cols, 2l+1]
            for l_out, (start, filters) in blocks.items():
                for n, l_f in enumerate(filters):
                    c0 = start + n * (2 * l_out + 1)
                    w3j = o3.wigner_3j(l_in, l_f, l_out, dtype=torch.float64)  # [2l_in+1, 2l_f+1, 2l_out+1]
                    cg[sh_slices[l_f], c0:c0 + 2 * l_out + 1, :] = w3j.permute(1, 2, 0)
            self.register_buffer(f"cg{l_in}", cg.flatten(1).to(torch.get_default_dtype()), persistent=False)

    def forward(self, sh: Tensor) -> list[Tensor]:
        e = sh.shape[0]
        return [(sh @ getattr(self, f"cg{l_in}")).view(e, -1, 2 * l_in + 1) for l_in in range(self.max_degree + 1)]


def polar_filter_degrees(l_in: int, l_out: int, max_degree: int) -> list[int]:
    """Filter degrees ``l_f <= max_degree`` coupling polar ``l_in`` to polar ``l_out`` (triangle and parity)."""
    return list(range(abs(l_in - l_out), min(l_in + l_out, max_degree) + 1, 2))


class FusedKernels(nn.Module):
    """Several full-mixing kernels on one input, ``f [N, irreps_in.dim] -> (W_k(x_j - x_i) f_j [E, out_k.dim], ...)``.

    Each kernel is the same map as :class:`EquivariantKernel` with ``mixing="full"`` (an
    ``o3.FullyConnectedTensorProduct`` of ``f_j`` with ``Y(x_j - x_i)`` weighted per edge by a
    :class:`RadialNetwork`), with e3nn's paths and path weights, computed in another order:

        G_{l_in}  = B_{l_in} @ f_j^{l_in} [E, 2 l_in + 1, C_in]                 (:class:`SphericalBasis`)
        out^{l}   = G^{l} [E, 2l + 1, X_l] @ w^{l} [E, X_l, C_out]              one bmm per output degree l

    where ``G^{l}`` gathers the rows of every ``G_{l_in}`` that lead to ``l`` (``X_l`` = paths into ``l`` x
    input channels) and ``w`` is the radial network's output. (This side of the product, with the short
    ``2l+1`` as rows, runs 2-5x faster on CPU than ``w @ G``.) ``G`` is shared by all kernels of the layer
    (keys and values). The edges are processed in chunks (``chunk_floats`` radial weights at a time); with
    autograd on, each chunk is recomputed in the backward pass (``torch.utils.checkpoint``), so the
    ``[E, paths x C_in x C_out]`` radial weights, the bulk of the cost, are never all in memory at once.

    Parameterisation: per kernel a radial MLP ``radial_dim -> hidden -> hidden -> W`` (``W`` = paths x
    ``C_in x C_out``) exactly as :class:`RadialNetwork`; its last layer's outputs are ordered
    ``[l_out, C_out, l_in, l_f, C_in]`` instead of e3nn's ``[path, C_in, C_out]`` (a permutation: the set of
    functions is the same). e3nn's path weights are folded into that last layer at run time. Input and
    output irreps must be polar with one block per degree (:func:`polar_irreps` or a subset of it).
    """

    def __init__(self, irreps_in: o3.Irreps, basis: SphericalBasis, irreps_outs: Sequence[o3.Irreps],
                 radial_dim: int, radial_hidden: int, chunk_floats: int = 1 << 22) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_outs = [o3.Irreps(irreps) for irreps in irreps_outs]
        self.chunk_floats = chunk_floats
        for irreps in (self.irreps_in, *self.irreps_outs):
            degrees = [ir.l for _, ir in irreps]
            if any(ir.p != (-1) ** ir.l for _, ir in irreps) or len(set(degrees)) != len(degrees) \
                    or max(degrees, default=0) > basis.max_degree:
                raise ValueError(f"FusedKernels needs polar irreps with one block per degree <= "
                                 f"{basis.max_degree}, got {irreps}")
        # Input blocks: (l_in, slice of f, channels).
        self.inputs = [(ir.l, s, mul) for (mul, ir), s in zip(self.irreps_in, self.irreps_in.slices(), strict=True)]
        self.nets, self.outs = nn.ModuleList(), nn.ModuleList()
        # Per kernel: list of output groups (l_out, C_out, sources), sources = [(l_in, first column, paths, C_in)].
        self.groups: list[list[tuple[int, int, list[tuple[int, int, int, int]]]]] = []
        for k, irreps_out in enumerate(self.irreps_outs):
            # e3nn's own instructions give the paths and their normalisation (path_weight).
            tp = o3.FullyConnectedTensorProduct(self.irreps_in, basis.irreps_sh, irreps_out, shared_weights=False,
                                                internal_weights=False)
            path_weight = {(self.irreps_in[ins.i_in1].ir.l, basis.irreps_sh[ins.i_in2].ir.l,
                            irreps_out[ins.i_out].ir.l): ins.path_weight for ins in tp.instructions}
            groups, scale = [], []
            for mul_out, ir_out in irreps_out:
                sources = []
                for l_in, _, mul_in in self.inputs:
                    start, filters = basis.columns[l_in][ir_out.l]
                    if filters and mul_in:
                        sources.append((l_in, start, len(filters), mul_in))
                groups.append((ir_out.l, mul_out, sources))  # no sources: zeros, as e3nn gives
                row = [path_weight[(l_in, l_f, ir_out.l)]  # [X_l] in (l_in, l_f, C_in) order
                       for l_in, start, paths, mul_in in sources
                       for l_f in basis.columns[l_in][ir_out.l][1] for _ in range(mul_in)]
                scale += row * mul_out
            if len(scale) != tp.weight_numel or sorted(path_weight) != sorted(
                    (l_in, l_f, l_out) for l_out, _, src in groups for l_in, _, _, _ in src
                    for l_f in basis.columns[l_in][l_out][1]):
                raise AssertionError("FusedKernels paths differ from e3nn's FullyConnectedTensorProduct")
            self.groups.append(groups)
            self.nets.append(mlp([radial_dim, radial_hidden, radial_hidden], last_act=True))
            self.outs.append(nn.Linear(radial_hidden, tp.weight_numel))
            self.register_buffer(f"scale{k}", torch.tensor(scale, dtype=torch.get_default_dtype()), persistent=False)

    def forward(self, f: Tensor, edges: EdgeFeatures, edge_index: Tensor) -> list[Tensor]:
        # Work in the paired order (an edge and its reverse at rows a and n + a); undo it at the end.
        order, n = edges.pairing if edges.pairing is not None else (None, 0)
        neighbours, radial, basis = edge_index[1], edges.radial, edges.basis
        if order is not None:
            neighbours, radial, basis = neighbours[order], radial[order], [b[order] for b in basis]
        if n and not torch.equal(radial[:n], radial[n:2 * n]):
            n = 0  # not reverse pairs after all (the pairing is checked, never trusted)
        f_j = f[neighbours]  # [E, in_dim]
        e = f_j.shape[0]
        # Contraction with the basis, all edges at once; then the columns of each output degree.
        g_in = {l_in: torch.bmm(basis[l_in], f_j[:, s].view(e, mul, 2 * l_in + 1).transpose(1, 2))
                for l_in, s, mul in self.inputs}  # [E, cols(l_in), C_in]
        g_out: dict[int, Tensor] = {}  # [E, 2l+1, X_l]: shared by the kernels
        for l_out, _, sources in (group for groups in self.groups for group in groups):
            if sources and l_out not in g_out:
                dim = 2 * l_out + 1
                parts = [g_in[l_in][:, start:start + paths * dim].view(e, paths, dim, mul_in).transpose(1, 2)
                         .reshape(e, dim, paths * mul_in) for l_in, start, paths, mul_in in sources]
                g_out[l_out] = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        # The last radial layer's bias rides as an extra input fixed at 1 (one plain matmul per chunk).
        ones = radial.new_ones(e, 1)
        hidden = [torch.cat([net(radial), ones], dim=1) for net in self.nets]  # [E, radial_hidden + 1]
        # Per kernel and output degree: [radial_hidden + 1, C_out X_l], e3nn's path weights folded in. Split
        # here, once, so that each chunk's radial weights come out per degree with no slicing or cat.
        weights = []
        for k, (out, groups) in enumerate(zip(self.outs, self.groups, strict=True)):
            linear = cast(nn.Linear, out)
            full = torch.cat([linear.weight, linear.bias[:, None]], dim=1).t() * getattr(self, f"scale{k}")
            sizes = [mul_out * g_out[l_out].shape[2] for l_out, mul_out, sources in groups if sources]
            weights.append(list(full.split(sizes, dim=1)))
        # Reverse edges have equal radial features, so one radial weight matrix serves both:
        # (G_ij ; G_ji) [e, 2(2l+1), X] @ w [e, X, C_out].
        degrees = sorted(g_out)
        g_pair = [torch.cat([g_out[d][:n], g_out[d][n:2 * n]], dim=1) for d in degrees] if n else []
        g_single = [g_out[d][2 * n:] for d in degrees]
        step = max(1, self.chunk_floats // sum(w.shape[1] for ws in weights for w in ws))
        recompute = torch.is_grad_enabled()
        rows = torch.arange(e, device=f.device) if order is None else order  # caller's row of each edge
        outs = [f_j.new_zeros(e, irreps.dim) for irreps in self.irreps_outs]
        for first, last, gs, paired in ((0, n, g_pair, True), (2 * n, e, g_single, False)):
            if last == first:
                continue
            results: list[tuple[Tensor, ...]] = []
            # split, not slices: the backward of a slice would zero-fill a full-size gradient per chunk.
            h_chunks = list(zip(*(h[first:last].split(step) for h in hidden), strict=True))
            g_chunks = list(zip(*(g.split(step) for g in gs), strict=True))
            for h_chunk, g_chunk in zip(h_chunks, g_chunks, strict=True):
                args = (list(h_chunk), list(g_chunk))
                if recompute:
                    results.append(checkpoint(self._chunk, weights, *args, degrees, use_reentrant=False))
                else:
                    results.append(self._chunk(weights, *args, degrees))
            # Each output degree once into the caller's edge order: [rows, (2 x) (2l+1), C_out] -> columns.
            flat = iter(torch.cat(parts) if len(parts) > 1 else parts[0] for parts in zip(*results, strict=True))
            dst = rows[first:last] if not paired else torch.cat([rows[:n], rows[n:2 * n]])
            for k, groups in enumerate(self.groups):
                col = 0
                for l_out, mul_out, sources in groups:
                    width = mul_out * (2 * l_out + 1)
                    if sources:
                        res = next(flat)  # [m, (2 x) (2l+1), C_out]
                        if paired:  # (ij ; ji) -> ij rows, then ji rows, each [C_out, 2l+1]
                            res = res.view(res.shape[0], 2, -1, mul_out).permute(1, 0, 3, 2)  # [2, m, C_out, 2l+1]
                        else:
                            res = res.transpose(1, 2)  # [m, C_out, 2l+1]
                        outs[k][dst, col:col + width] = res.reshape(-1, width)
                    col += width
        if edges.envelope is not None:
            outs = [out * edges.envelope[:, None] for out in outs]
        return outs

    def _chunk(self, weights: list[list[Tensor]], hidden: list[Tensor], g: list[Tensor],
               degrees: list[int]) -> tuple[Tensor, ...]:
        """Radial weights of a chunk of edges (or of reverse pairs) and their products ``[e, rows, C_out]``
        with ``g``, one per kernel and output degree that has paths (``rows`` = ``2l+1``, twice for pairs)."""
        e = hidden[0].shape[0]
        g_of = dict(zip(degrees, g, strict=True))  # [e, (2 x) (2l+1), X_l]
        outs: list[Tensor] = []
        for groups, weight, h in zip(self.groups, weights, hidden, strict=True):
            active = [(l_out, mul_out) for l_out, mul_out, sources in groups if sources]
            for (l_out, mul_out), weight_l in zip(active, weight, strict=True):
                w = h @ weight_l  # [e, C_out X_l], the radial weights of this chunk for degree l_out
                outs.append(torch.bmm(g_of[l_out], w.view(e, mul_out, -1).transpose(1, 2)))  # [e, rows, C_out]
        return tuple(outs)


def pair_reverse_edges(edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None = None) -> tuple[Tensor, int]:
    """An order of the edges ``perm [E]`` and a count ``n``: edges ``perm[:n]`` (``i < j``) and ``perm[n:2n]``
    are each other's reverse (``j -> i``), with equal ``edge_attr`` rows; the unpaired rest follow.

    Bond, radius and full graphs are symmetric, so all of their edges pair up. Reverse edges have the same
    distance and bond type, hence the same radial weights, which :class:`FusedKernels` then computes once
    per pair. A graph with repeated edges is left unpaired.
    """
    e = edge_index.shape[1]
    i, j = edge_index
    key, rkey = i * num_nodes + j, j * num_nodes + i  # [E]
    sorted_key, order = key.sort()
    if e < 2 or bool((sorted_key[1:] == sorted_key[:-1]).any()):
        return torch.arange(e, device=edge_index.device), 0
    at = torch.searchsorted(sorted_key, rkey).clamp(max=e - 1)
    rev = order[at]  # [E], the reverse edge where there is one
    has = sorted_key[at] == rkey
    if edge_attr is not None:
        has &= (edge_attr[rev] == edge_attr).all(dim=1)
    first = (has & (i < j)).nonzero().squeeze(1)  # [n]
    second = rev[first]  # [n]
    paired = torch.zeros(e, dtype=torch.bool, device=edge_index.device)
    paired[first] = paired[second] = True
    return torch.cat([first, second, (~paired).nonzero().squeeze(1)]), int(first.numel())


def smooth_degree(edge_index: Tensor, envelope: Tensor | None, num_nodes: int, dtype: torch.dtype) -> Tensor:
    """Neighbours of each atom ``[N]``, each counted with its envelope weight, at least 1.

    Without a cutoff this is the plain neighbour count. With one, a neighbour crossing the cutoff
    enters with weight 0, so a normalisation by it stays smooth in the positions.
    """
    weights = envelope if envelope is not None else torch.ones(edge_index.shape[1], dtype=dtype,
                                                               device=edge_index.device)
    return scatter_sum(weights.to(dtype), edge_index[0], num_nodes).clamp(min=1.0)


# ---------------------------------------------------------------------------------------------------
# Readout


@lru_cache(maxsize=1)
def _cartesian_bases() -> tuple[Tensor, Tensor]:
    """(``to_xyz [3,3]``, ``rank2 [5,3,3]``) in float64, both in the Cartesian frame of ``pos``.

    ``to_xyz`` maps e3nn's ``1o`` components to ``(x, y, z)``: e3nn's ``l=1`` spherical harmonics of a unit
    vector are ``sqrt(3)`` times its components in e3nn's order, so ``M = Y1(I) / sqrt(3)`` has row ``k`` =
    e3nn components of axis ``k``; ``M`` is orthogonal and ``v_xyz = v_e3nn @ M^T``. ``rank2[m]`` is the
    Cartesian matrix of the ``m``-th ``2e`` basis element: e3nn's change of basis for symmetric rank-2
    tensors (``ReducedTensorProducts("ij=ji", i="1o")``, whose indices are in e3nn's ``1o`` basis),
    brought to ``(x, y, z)`` as ``M Q_m M^T``. Deriving both from e3nn keeps them right under either of
    e3nn's conventions for the order of the ``l=1`` components.
    """
    eye = torch.eye(3, dtype=torch.float64)
    m = o3.spherical_harmonics(1, eye, normalize=False, normalization="component") / math.sqrt(3.0)  # [3,3]
    with _default_dtype(torch.float64):
        rtp = o3.ReducedTensorProducts("ij=ji", i="1o")
    q = rtp.change_of_basis.to(torch.float64)  # [6,3,3]: 0e (trace) then 2e
    rows = [s for (_, ir), s in zip(rtp.irreps_out, rtp.irreps_out.slices(), strict=True) if ir == o3.Irrep("2e")]
    q2 = q[rows[0]]  # [5,3,3], symmetric and traceless
    return m.T.contiguous(), torch.einsum("ka,mab,lb->mkl", m, q2, m).contiguous()


class AtomFeatureReadout(nn.Module):
    """Irreps features ``[N, irreps_in.dim]`` -> :class:`~se3mol.nn.heads.AtomFeatures`, through one ``o3.Linear``.

    ``scalars [N,H]`` from the ``0e`` channels, ``vectors [N,C,3]`` from ``1o`` channels and ``rank2 [N,C2,3,3]``
    (symmetric, traceless) from ``2e`` channels, both in the Cartesian ``(x, y, z)`` frame of ``pos``:
    rotating ``pos`` by ``R`` rotates ``vectors`` by ``R`` and sends ``rank2`` to ``R T R^T``. Vectors
    (rank-2 features) are produced only when ``irreps_in`` has ``1o`` (``2e``) channels.
    """

    def __init__(self, irreps_in: o3.Irreps, scalars: int, vectors: int, rank2: int) -> None:
        super().__init__()
        irreps_in = o3.Irreps(irreps_in)
        self.scalars = scalars
        self.vector_channels = vectors if o3.Irrep("1o") in irreps_in else 0
        self.rank2_channels = rank2 if o3.Irrep("2e") in irreps_in else 0
        out = [(scalars, "0e"), (self.vector_channels, "1o"), (self.rank2_channels, "2e")]
        self.linear = o3.Linear(irreps_in, o3.Irreps([(mul, ir) for mul, ir in out if mul > 0]))
        to_xyz, rank2_basis = _cartesian_bases()
        dtype = torch.get_default_dtype()
        self.register_buffer("to_xyz", to_xyz.to(dtype, copy=True), persistent=False)  # [3,3]
        self.register_buffer("rank2_basis", rank2_basis.to(dtype, copy=True), persistent=False)  # [5,3,3]

    def forward(self, x: Tensor) -> AtomFeatures:
        y = self.linear(x)  # [N, H + 3C + 5C2]
        n, h, c, c2 = y.shape[0], self.scalars, self.vector_channels, self.rank2_channels
        vectors = rank2 = None
        if c:
            vectors = y[:, h:h + 3 * c].reshape(n, c, 3) @ self.to_xyz  # [N,C,3]
        if c2:
            coeffs = y[:, h + 3 * c:].reshape(n, c2, 5)  # [N,C2,5]
            rank2 = torch.einsum("ncm,mab->ncab", coeffs, self.rank2_basis)  # [N,C2,3,3]
        return AtomFeatures(scalars=y[:, :h], vectors=vectors, rank2=rank2)


class InputEmbedding(nn.Module):
    """Atoms -> first irreps features ``[N, irreps_out.dim]``: ``hidden x 0e`` from the element (plus a
    linear map of invariant inputs ``batch.node_attr [N,F]``), then ``C x 1o`` channels holding the vector
    inputs ``batch.node_vec [N,C,3]`` (velocities), moved from the Cartesian frame into e3nn's basis.
    """

    def __init__(self, elements: tuple[int, ...], hidden: int, node_attr_dim: int = 0,
                 vector_inputs: int = 0) -> None:
        super().__init__()
        from se3mol.nn.layers import ElementEmbedding

        self.embed = ElementEmbedding(elements, hidden)
        self.node_in = nn.Linear(node_attr_dim, hidden, bias=False) if node_attr_dim else None
        self.vector_inputs = vector_inputs
        self.irreps_out = o3.Irreps(f"{hidden}x0e" + (f" + {vector_inputs}x1o" if vector_inputs else ""))
        to_xyz, _ = _cartesian_bases()
        self.register_buffer("from_xyz", to_xyz.T.to(torch.get_default_dtype(), copy=True), persistent=False)

    def forward(self, batch) -> Tensor:
        f = self.embed(batch.z)  # [N, hidden]
        if self.node_in is not None:
            f = f + self.node_in(batch.node_attr.to(f.dtype))
        if self.vector_inputs:
            v = batch.node_vec.to(f.dtype) @ self.from_xyz.to(f.dtype)  # [N,C,3] in e3nn's 1o basis
            f = torch.cat([f, v.reshape(v.shape[0], -1)], dim=-1)
        return f
