"""SE(3)-Transformer (Fuchs, Worrall, Fischer & Welling, NeurIPS 2020, arXiv:2006.10503).

Graph self-attention whose keys and values are Tensor Field Network kernels. Each layer (paper eq. 10):

    q_i  = W_Q f_i                                         query, per-atom linear map (o3.Linear)
    k_ij = W_K(x_j - x_i) f_j,   v_ij = W_V(x_j - x_i) f_j  keys and values: e3nn tensor products of f_j
                                                           with Y(x_j - x_i), radial weights mixing channels
    l_ij^h = <q_i^h, k_ij^h> / sqrt(d_h)                   one logit per head h
    a_ij^h = softmax_j(l_ij^h)                             over the neighbours j of i
    z_i  = sum_j a_ij^h v_ij^h                             heads = channel blocks of every degree
    f_i <- SI(z_i (+) f_i)                                 self-interaction of attention output and input

and the norm nonlinearity (e3nn ``NormActivation``) between layers.

Invariance of the logits: queries and keys have the same irreps, ``hidden`` channels of each degree
present in the layer's input; head ``h`` owns channels ``h*c .. (h+1)*c - 1`` (``c = hidden / heads``) of
every degree. The logit sums ``q . k`` over those channels and over the ``2l+1`` components of each: e3nn's
real Wigner matrices are orthogonal, so ``(D q) . (D k) = q . k``, and both carry the same parity.

With a ``cutoff`` the weights become ``a_ij = e_ij exp(l_ij) / sum_k e_ik exp(l_ik)`` (``e`` the smooth
envelope): a softmax of ``l + log e``, so neighbours leave the attention smoothly at the cutoff and the
weights of every atom that has a neighbour inside it still sum to 1. The envelope also scales the
key and value kernels.

Self-interaction (config ``self_interaction``), following the authors' reference code, acts on the
concatenation ``z_i (+) f_i``: ``"linear"`` is ``o3.Linear`` (learned per-degree channel mixing);
``"attentive"`` is the paper's attentive self-interaction: per atom and degree, an MLP of the invariant
inner products ``<f_c, f_c'>`` of all pairs of channels of that degree gives mixing weights (softmax over
input channels), which then mix those channels. Parity is kept (polar irreps only), so the network is
E(3)- (not just SE(3)-) equivariant; see :mod:`se3mol.nn.e3`.

Cost: keys and values mix channels per edge (as in the paper), ``paths x hidden^2`` radial weights per
edge and kernel; prefer bond or radius graphs for large molecules. They are computed by
:class:`~se3mol.nn.e3.FusedKernels`: the same map as an e3nn ``FullyConnectedTensorProduct`` per kernel,
evaluated basis first (the Clebsch-Gordan x spherical-harmonics basis of each edge is built once per
forward pass and shared by all layers), keys and values sharing the contraction of ``f_j`` with it, an
edge and its reverse sharing their radial weights, in chunks of edges that are recomputed in the backward
pass instead of being stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3
from e3nn.nn import NormActivation
from torch import Tensor, nn

from se3mol.graph import Batch
from se3mol.nn.e3 import (
    AtomFeatureReadout,
    E3Module,
    EdgeEmbedding,
    EdgeFeatures,
    FusedKernels,
    InputEmbedding,
    SphericalBasis,
    pair_reverse_edges,
    polar_irreps,
    validate_e3_config,
)
from se3mol.nn.entry import ModelEntry
from se3mol.nn.heads import AtomFeatures
from se3mol.nn.layers import scatter_sum


@dataclass
class SE3TransformerConfig:
    """SE(3)-Transformer hyper-parameters.

    Attributes:
        hidden: channels per degree (and width of the invariant features handed to the heads).
        layers: number of attention layers.
        max_degree: highest degree ``l`` of features and kernels.
        heads: attention heads; each owns ``hidden / heads`` channels of every degree.
        num_rbf: Gaussians in the distance expansion.
        r_max: largest distance (Angstrom) the expansion resolves.
        cutoff: if set, attention and kernels fade smoothly to zero at this distance (use with radius graphs).
        self_interaction: ``"linear"`` or ``"attentive"`` (the paper's attentive self-interaction).
        node_attr_dim: width of extra invariant atom inputs ``batch.node_attr`` (0: none).
        vector_inputs: channels of vector atom inputs ``batch.node_vec`` (0: none), fed as ``1o`` features.
    """

    hidden: int = 16
    layers: int = 4
    max_degree: int = 2
    heads: int = 4
    num_rbf: int = 32
    r_max: float = 8.0
    cutoff: float | None = None
    node_attr_dim: int = 0
    vector_inputs: int = 0
    self_interaction: str = "linear"

    def __post_init__(self) -> None:
        validate_e3_config("se3_transformer", hidden=self.hidden, layers=self.layers, max_degree=self.max_degree,
                           num_rbf=self.num_rbf, r_max=self.r_max, cutoff=self.cutoff)
        if self.heads < 1 or self.hidden % self.heads:
            raise ValueError(f"invalid se3_transformer config: heads ({self.heads}) must divide hidden "
                             f"({self.hidden}), the channels of each degree that the heads share out")
        if self.self_interaction not in SELF_INTERACTIONS:
            raise ValueError(f"invalid se3_transformer config: unknown self_interaction "
                             f"{self.self_interaction!r}; choose {' or '.join(map(repr, SELF_INTERACTIONS))}")


class AttentiveSelfInteraction(nn.Module):
    """Attentive self-interaction (Fuchs et al. 2020, sec. 3.3): ``[N, irreps_in.dim] -> [N, irreps_out.dim]``.

    For each irrep ``(l, p)`` of ``irreps_out``: gather the ``m_in`` input channels of that irrep,
    ``X [N, m_in, 2l+1]``; their Gram matrix ``X X^T / (2l+1)`` is invariant; an MLP of it (layer norm,
    then a hidden layer of ``m_out`` units) gives weights ``W [N, m_out, m_in]`` (softmax over input
    channels); the output is ``W X``. A degree the input lacks gives zeros, as ``o3.Linear`` would.
    The authors' code maps the ``m_in^2`` inner products to the ``m_out m_in`` weights with a single
    linear layer; the hidden layer here cuts that layer's ``m_in^3 m_out`` parameters by a factor ~``m_in``.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.blocks: list[tuple[int, o3.Irrep, list[tuple[slice, int]]]] = []
        self.nets = nn.ModuleDict()
        for mul_out, ir in self.irreps_out:
            sources = [(s, mul) for (mul, ir_in), s in zip(self.irreps_in, self.irreps_in.slices(), strict=True)
                       if ir_in == ir and mul > 0]
            m_in = sum(mul for _, mul in sources)
            self.blocks.append((mul_out, ir, sources))
            if m_in:
                self.nets[str(ir)] = nn.Sequential(nn.LayerNorm(m_in * m_in), nn.Linear(m_in * m_in, mul_out),
                                                   nn.SiLU(), nn.Linear(mul_out, mul_out * m_in))

    def forward(self, x: Tensor) -> Tensor:
        n, out = x.shape[0], []
        for mul_out, ir, sources in self.blocks:
            if not sources:
                out.append(x.new_zeros(n, mul_out * ir.dim))
                continue
            xs = torch.cat([x[:, s].reshape(n, mul, ir.dim) for s, mul in sources], dim=1)  # [N, m_in, 2l+1]
            gram = (xs @ xs.transpose(1, 2)).flatten(1) / ir.dim  # [N, m_in^2], invariant
            w = self.nets[str(ir)](gram).reshape(n, mul_out, xs.shape[1]).softmax(dim=-1)  # [N, m_out, m_in]
            out.append((w @ xs).flatten(1))  # [N, m_out * (2l+1)]
        return torch.cat(out, dim=-1)


SELF_INTERACTIONS: dict[str, type[nn.Module]] = {"linear": o3.Linear, "attentive": AttentiveSelfInteraction}


def head_index(irreps: o3.Irreps, heads: int) -> Tensor:
    """Head owning each component of an ``irreps`` tensor, ``[irreps.dim]``: channel ``c`` of a block of
    ``mul`` channels belongs to head ``c // (mul / heads)``."""
    parts = [(torch.arange(mul) // (mul // heads)).repeat_interleave(ir.dim) for mul, ir in irreps]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


class NeighbourhoodSoftmax(nn.Module):
    """Softmax of ``logits [E,H]`` over the edges of each receiver, per head; optional ``weights [E]``
    (the cutoff envelope) multiply each term. Returns ``alpha [E,H]``; a module of its own so that
    tests and analyses can read the weights with a forward hook."""

    def forward(self, logits: Tensor, receivers: Tensor, num_nodes: int, weights: Tensor | None = None) -> Tensor:
        index = receivers[:, None].expand_as(logits)
        # Shift by the per-receiver maximum (a constant per softmax, so no gradient is needed through it).
        peak = logits.new_zeros(num_nodes, logits.shape[1]).scatter_reduce(
            0, index, logits.detach(), reduce="amax", include_self=False)  # [N,H]
        e = torch.exp(logits - peak[receivers])  # [E,H]
        if weights is not None:
            e = e * weights[:, None]
        total = scatter_sum(e, receivers, num_nodes).clamp(min=torch.finfo(e.dtype).tiny)  # [N,H]
        return e / total[receivers]


class SE3AttentionLayer(nn.Module):
    """One multi-head equivariant attention layer: ``[N, irreps_in.dim] -> [N, irreps_out.dim]``."""

    def __init__(self, irreps_in: o3.Irreps, hidden: int, max_degree: int, heads: int, basis: SphericalBasis,
                 radial_dim: int, self_interaction: str) -> None:
        super().__init__()
        irreps_in = o3.Irreps(irreps_in)
        irreps_v = polar_irreps(hidden, max_degree)
        # Queries are linear in f_i, so they (and the keys) have only the degrees that f_i has.
        degrees_in = {ir.l for _, ir in irreps_in}
        irreps_qk = o3.Irreps([(mul, ir) for mul, ir in irreps_v if ir.l in degrees_in])
        self.query = o3.Linear(irreps_in, irreps_qk)
        # Keys and values: two kernels (own radial networks) sharing one contraction with the edge basis.
        self.kernels = FusedKernels(irreps_in, basis, [irreps_qk, irreps_v], radial_dim, hidden)
        self.softmax = NeighbourhoodSoftmax()
        self.heads = heads
        self.scale = (irreps_qk.dim // heads) ** -0.5
        self.register_buffer("qk_head", head_index(irreps_qk, heads), persistent=False)  # [qk_dim]
        self.register_buffer("v_head", head_index(irreps_v, heads), persistent=False)  # [v_dim]
        self.project = SELF_INTERACTIONS[self_interaction](irreps_v + irreps_in, irreps_v)
        self.irreps_in, self.irreps_out = irreps_in, irreps_v

    def forward(self, f: Tensor, edges: EdgeFeatures, edge_index: Tensor) -> Tensor:
        i = edge_index[0]
        n = f.shape[0]
        q = self.query(f)[i]  # [E, qk_dim]
        k, v = self.kernels(f, edges, edge_index)  # [E, qk_dim], [E, v_dim]
        qk = q * k
        logits = qk.new_zeros(qk.shape[0], self.heads).index_add_(1, self.qk_head, qk) * self.scale  # [E,H]
        alpha = self.softmax(logits, i, n, edges.envelope)  # [E,H]
        v = v * alpha[:, self.v_head]  # [E, v_dim]
        z = scatter_sum(v, i, n)  # [N, v_dim]
        return self.project(torch.cat([z, f], dim=-1))


class SE3Transformer(E3Module):
    """SE(3)-Transformer representation: ``batch -> AtomFeatures(scalars [N,H], vectors [N,H,3],
    rank2 [N,H,3,3])`` (rank-2 features when ``max_degree >= 2``). E(3)- and permutation-equivariant."""

    def __init__(self, config: SE3TransformerConfig, elements: tuple[int, ...], edge_attr_dim: int = 0) -> None:
        super().__init__()
        c = self.config = config
        with self.exact_constants():
            self.embed = InputEmbedding(elements, c.hidden, c.node_attr_dim, c.vector_inputs)
            self.edges = EdgeEmbedding(c.max_degree, c.num_rbf, c.r_max, c.cutoff, edge_attr_dim)
            self.basis = SphericalBasis(c.max_degree)
            irreps = self.embed.irreps_out
            self.layers, self.norms = nn.ModuleList(), nn.ModuleList()
            for k in range(c.layers):
                self.layers.append(SE3AttentionLayer(irreps, c.hidden, c.max_degree, c.heads, self.basis,
                                                     self.edges.radial_dim, c.self_interaction))
                irreps = self.layers[-1].irreps_out
                if k < c.layers - 1:
                    self.norms.append(NormActivation(irreps, nn.functional.silu, bias=True))
            self.readout = AtomFeatureReadout(irreps, scalars=c.hidden, vectors=c.hidden, rank2=c.hidden)
        self.vector_channels = self.readout.vector_channels
        self.rank2_channels = self.readout.rank2_channels

    def forward(self, batch: Batch) -> AtomFeatures:
        f = self.embed(batch)  # [N, hidden x 0e (+ C x 1o vector inputs)]
        edges = self.edges(batch)
        # Geometry and graph only: once per forward, shared by every layer.
        edges.basis = self.basis(edges.sh)
        edges.pairing = pair_reverse_edges(batch.edge_index, f.shape[0], batch.edge_attr)
        for k, layer in enumerate(self.layers):
            f = layer(f, edges, batch.edge_index)
            if k < len(self.norms):
                f = self.norms[k](f)
        return self.readout(f)


ENTRY = ModelEntry(
    name="se3_transformer",
    config_cls=SE3TransformerConfig,
    build=lambda cfg, elements, edge_attr_dim: SE3Transformer(cfg, elements, edge_attr_dim),
    description="SE(3)-Transformer (Fuchs et al. 2020): equivariant multi-head graph attention on e3nn kernels",
)
