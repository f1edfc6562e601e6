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
- :class:`AtomFeatureReadout`: irreps features -> :class:`~se3mol.nn.heads.AtomFeatures` in the Cartesian
  ``(x, y, z)`` frame of ``pos``.
- :class:`E3Module`: base class that keeps e3nn's Clebsch-Gordan buffers exact under dtype casts.

No spherical harmonics or Clebsch-Gordan coefficients are written by hand: all come from e3nn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
from e3nn import o3
from torch import Tensor, nn

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


def _restore_after_load(module: nn.Module, incompatible_keys: Any) -> None:
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
    """

    sh: Tensor
    radial: Tensor
    envelope: Tensor | None


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
    weights per edge (SE(3)-Transformer keys and values).

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
            blocks, instructions = [], []
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
