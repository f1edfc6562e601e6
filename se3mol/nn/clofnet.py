"""ClofNet: SE(3) equivariant graph networks with complete local frames (Du et al., ICML 2022).

For every edge ``(i, j)``, on positions centred per molecule (with the ``batch`` index), a
complete orthonormal frame:

    a_ij = (x_i - x_j) / |x_i - x_j|        b_ij = (x_i x x_j) / |x_i x x_j|        c_ij = a_ij x b_ij

*Scalarize*: projecting geometric quantities on the frame gives SO(3)-invariant edge scalars
(here the projections of ``x_i`` and ``x_j`` on ``a`` and ``c``; their projections on ``b`` are
zero by construction). With distances (Gaussian basis), node features and edge attributes they feed
invariant message passing, where any nonlinearity is allowed. *Vectorize*: each layer turns its
messages into three coefficients per edge and sums ``c1 a + c2 b + c3 c`` over neighbours; the
per-atom vectors of all layers are added (as the paper's coordinate updates add up).

Degenerate frames stay finite: unit vectors are taken with a soft norm ``v / sqrt(|v|^2 + eps^2)``,
which goes smoothly to the zero vector when atoms coincide (``a``) or when ``x_i`` and ``x_j`` are
parallel, as in linear molecules such as CO2, acetylene or HCN (``b``, hence ``c``). The frame then
carries less information but never NaN or infinity.

Symmetry: the cross product makes ``b`` a pseudovector, so ClofNet is equivariant under rotations
and translations (SE(3)) but *not* under reflections: a mirrored molecule does not get mirrored
vector outputs. This is deliberate (it lets a model tell enantiomers apart), and is why the
representation sets ``reflection_equivariant = False`` and the equivariance check reports
reflections separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from se3mol.graph import Batch
from se3mol.nn.entry import ModelEntry
from se3mol.nn.heads import AtomFeatures
from se3mol.nn.layers import ElementEmbedding, GaussianRBF, Segments, center_positions, cosine_cutoff, mlp, sigmoid_gate

# Soft-norm floors: |x_i - x_j| in Angstrom, |x_i x x_j| in Angstrom^2.
EPS_DIFF = 1e-3
EPS_CROSS = 1e-2


@dataclass
class ClofNetConfig:
    """ClofNet hyper-parameters.

    Attributes:
        hidden: width of node features and messages.
        layers: number of message-passing layers.
        num_rbf: Gaussians in the distance expansion.
        r_max: largest distance (Angstrom) the expansion resolves.
        cutoff: if set, messages fade smoothly to zero at this distance (use with radius graphs).
        frame_features: width of the learned embedding of the frame scalars.
        node_attr_dim: width of extra invariant atom inputs ``batch.node_attr`` (0: none).
        vector_inputs: channels of vector atom inputs ``batch.node_vec`` (0: none, e.g. 1 for velocities).
            They are scalarized on every edge frame (``v_i`` and ``v_j`` on ``a, b, c``), and each layer
            adds ``phi_vel(h_i) v_i`` to the output vectors, as ClofNet's dynamics model moves atoms along
            their velocities.
    """

    hidden: int = 128
    layers: int = 4
    num_rbf: int = 32
    r_max: float = 8.0
    cutoff: float | None = None
    frame_features: int = 32
    node_attr_dim: int = 0
    vector_inputs: int = 0


def soft_unit(v: Tensor, eps: float) -> Tensor:
    """``v / sqrt(|v|^2 + eps^2)`` along the last axis: a unit vector, shrinking smoothly to 0 as ``v -> 0``."""
    return v * torch.rsqrt((v * v).sum(-1, keepdim=True) + eps * eps)


def edge_frames(xc: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Complete local frames ``(a, b, c)``, each ``[E,3]``, of edges ``edge_index`` on centred ``xc [N,3]``."""
    xi, xj = xc[edge_index[0]], xc[edge_index[1]]
    a = soft_unit(xi - xj, EPS_DIFF)
    b = soft_unit(torch.linalg.cross(xi, xj, dim=-1), EPS_CROSS)
    c = torch.linalg.cross(a, b, dim=-1)
    return a, b, c


def scalarize(xc: Tensor, edge_index: Tensor, frame: tuple[Tensor, Tensor, Tensor],
              node_vec: Tensor | None = None) -> Tensor:
    """Invariant edge scalars ``[E,4+6C]``: ``x_i . a, x_i . c, x_j . a, x_j . c`` (``x . b`` is always 0),
    then, for each vector input channel, ``v_i`` and ``v_j`` on ``a, b, c``."""
    a, b, c = frame
    i, j = edge_index[0], edge_index[1]
    xi, xj = xc[i], xc[j]
    out = [torch.stack([(xi * a).sum(-1), (xi * c).sum(-1), (xj * a).sum(-1), (xj * c).sum(-1)], dim=-1)]
    if node_vec is not None:
        axes = torch.stack([a, b, c], dim=1)  # [E,3,3]
        for v in (node_vec[i], node_vec[j]):  # [E,C,3]
            out.append(torch.einsum("ecx,ekx->eck", v, axes).flatten(1))  # [E,3C]
    return torch.cat(out, dim=-1)


class ClofNetLayer(nn.Module):
    """One invariant message-passing layer with a vectorization output."""

    def __init__(self, hidden: int, edge_dim: int) -> None:
        super().__init__()
        self.w_i = nn.Linear(hidden, hidden)  # first message layer, receiver part (per node, then gathered)
        self.w_j = nn.Linear(hidden, hidden, bias=False)  # sender part
        self.w_e = nn.Linear(edge_dim, hidden, bias=False)  # distances, frame scalars, edge attributes
        self.phi_e = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.phi_gate = nn.Linear(hidden, 1)
        self.phi_h = mlp([2 * hidden, hidden, hidden])
        self.phi_v = mlp([hidden, hidden, 3])  # vectorization coefficients per edge

    def forward(self, h: Tensor, seg_i: Segments, seg_j: Segments, edge_feat: Tensor,
                frame: tuple[Tensor, Tensor, Tensor], envelope: Tensor | None, inv_degree: Tensor,
                ) -> tuple[Tensor, Tensor]:
        m = self.phi_e(seg_i.gather(self.w_i(h)) + seg_j.gather(self.w_j(h)) + self.w_e(edge_feat))  # [E,H]
        gate = sigmoid_gate(self.phi_gate(m))  # [E,1]
        if envelope is not None:
            gate = gate * envelope[:, None]
        coeff = self.phi_v(m) * gate  # [E,3]
        a, b, c = frame
        vec = coeff[:, :1] * a + coeff[:, 1:2] * b + coeff[:, 2:] * c  # [E,3]
        vec = seg_i.sum(vec) * inv_degree[:, None]  # [N,3]
        h = h + self.phi_h(torch.cat([h, seg_i.sum(gate * m)], dim=-1))
        return h, vec


class ClofNet(nn.Module):
    """ClofNet representation: ``batch -> AtomFeatures(scalars [N,H], vectors [N,1,3])``.

    SE(3)- and permutation-equivariant, not reflection-equivariant (see the module docstring).
    ``forward(batch, node_condition)`` adds an optional per-atom conditioning ``[N,H]`` to the
    embedded atoms (the conformer score model passes its noise-level embedding this way).
    """

    vector_channels = 1
    reflection_equivariant = False

    def __init__(self, config: ClofNetConfig, elements: tuple[int, ...], edge_attr_dim: int = 0) -> None:
        super().__init__()
        c = self.config = config
        self.embed = ElementEmbedding(elements, c.hidden)
        self.rbf = GaussianRBF(c.num_rbf, c.r_max)
        self.edge_attr_dim = edge_attr_dim
        self.frame_embed = mlp([4 + 6 * c.vector_inputs, c.frame_features, c.frame_features], last_act=True)
        edge_dim = c.num_rbf + c.frame_features + edge_attr_dim
        self.layers = nn.ModuleList(ClofNetLayer(c.hidden, edge_dim) for _ in range(c.layers))
        self.node_in = nn.Linear(c.node_attr_dim, c.hidden, bias=False) if c.node_attr_dim else None
        self.phi_vel = nn.ModuleList(mlp([c.hidden, c.hidden, c.vector_inputs]) for _ in range(c.layers)) \
            if c.vector_inputs else None

    def forward(self, batch: Batch, node_condition: Tensor | None = None) -> AtomFeatures:
        h = self.embed(batch.z)  # [N,H]
        if node_condition is not None:
            h = h + node_condition
        if self.node_in is not None:
            assert batch.node_attr is not None, "this ClofNet was built for per-atom inputs (node_attr)"
            h = h + self.node_in(batch.node_attr.to(h.dtype))
        node_vec = batch.node_vec if self.config.vector_inputs else None
        xc = center_positions(batch.pos, batch.batch, batch.num_graphs)  # [N,3]
        ei = batch.edge_index
        frame = edge_frames(xc, ei)
        d = (xc[ei[0]] - xc[ei[1]]).norm(dim=-1)  # [E]
        feats = [self.rbf(d), self.frame_embed(scalarize(xc, ei, frame, node_vec))]
        if self.edge_attr_dim:
            assert batch.edge_attr is not None, "this ClofNet was built for a graph with edge features"
            feats.append(batch.edge_attr.to(d.dtype))
        edge_feat = torch.cat(feats, dim=-1)  # [E,F]
        env = cosine_cutoff(d, self.config.cutoff) if self.config.cutoff else None
        degree = torch.bincount(ei[0], minlength=h.shape[0]).clamp(min=1).to(xc.dtype)  # [N]
        inv_degree = 1.0 / degree
        seg_i, seg_j = Segments(ei[0], h.shape[0]), Segments(ei[1], h.shape[0])  # shared by all layers
        vec = torch.zeros_like(xc)
        for k, layer in enumerate(self.layers):
            h, v = layer(h, seg_i, seg_j, edge_feat, frame, env, inv_degree)
            vec = vec + v
            if self.phi_vel is not None:
                vec = vec + (self.phi_vel[k](h)[:, :, None] * node_vec).sum(1)
        return AtomFeatures(scalars=h, vectors=vec[:, None, :])


ENTRY = ModelEntry(
    name="clofnet",
    config_cls=ClofNetConfig,
    build=lambda cfg, elements, edge_attr_dim: ClofNet(cfg, elements, edge_attr_dim),
    description="ClofNet (Du et al. 2022): complete local frames, SE(3)- (not reflection-) equivariant",
)
