"""EGNN: E(n) Equivariant Graph Neural Networks (Satorras, Hoogeboom & Welling, ICML 2021).

Each layer (paper eqs. 3-6, with the soft edge gate of its QM9 model):

    m_ij = phi_e(h_i, h_j, rbf(|x_i - x_j|), a_ij)          edge message, invariant
    e_ij = sigmoid(phi_inf(m_ij))                            soft edge inference
    x_i <- x_i + 1/(n_i) sum_j (x_i - x_j) phi_x(m_ij)        optional coordinate update
    h_i <- h_i + phi_h(h_i, sum_j e_ij m_ij)

Two departures from the reference code, both exact rewrites or standard featurisations:
the first linear layer of phi_e is applied to node features *before* gathering them onto
edges (W [h_i; h_j] = W_a h_i + W_b h_j costs O(N H^2) instead of O(E H^2)), and the distance
enters through a Gaussian radial basis (as in SchNet) instead of |x|^2 alone, which converges
faster. The last layer also emits per-atom vectors ``sum_j (x_i - x_j) phi_v(m_ij)``, used as
atomic dipoles by the dipole head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from se3mol.graph import Batch
from se3mol.nn.entry import ModelEntry
from se3mol.nn.heads import AtomFeatures
from se3mol.nn.layers import ElementEmbedding, GaussianRBF, Segments, cosine_cutoff, mlp, sigmoid_gate


@dataclass
class EGNNConfig:
    """EGNN hyper-parameters.

    Attributes:
        hidden: width of node features and messages.
        layers: number of message-passing layers.
        num_rbf: Gaussians in the distance expansion.
        r_max: largest distance (Angstrom) the expansion resolves; also the smooth cutoff of
            messages when ``cutoff`` is set.
        cutoff: if set, messages fade smoothly to zero at this distance (use with radius graphs).
        coord_updates: update coordinates between layers, as in the paper's dynamics models
            (its QM9 model keeps them fixed); the total displacement becomes a second vector channel.
        node_attr_dim: width of extra invariant atom inputs ``batch.node_attr`` (0: none).
        vector_inputs: channels of vector atom inputs ``batch.node_vec`` (0: none); with coordinate
            updates each layer also moves atoms along them, ``x_i += phi_vel(h_i) v_i`` (the paper's
            velocity-aware EGNN for N-body dynamics, its eq. 7).
    """

    hidden: int = 128
    layers: int = 4
    num_rbf: int = 32
    r_max: float = 8.0
    cutoff: float | None = None
    coord_updates: bool = False
    node_attr_dim: int = 0
    vector_inputs: int = 0


class EGNNLayer(nn.Module):
    def __init__(self, hidden: int, num_rbf: int, edge_attr_dim: int, coord_updates: bool,
                 vector_out: bool, vector_inputs: int = 0) -> None:
        super().__init__()
        self.w_i = nn.Linear(hidden, hidden)  # first phi_e layer, receiver part (carries the bias)
        self.w_j = nn.Linear(hidden, hidden, bias=False)  # sender part
        self.w_d = nn.Linear(num_rbf + edge_attr_dim, hidden, bias=False)  # distance / bond part
        self.phi_e = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.phi_inf = nn.Linear(hidden, 1)
        self.phi_h = mlp([2 * hidden, hidden, hidden])
        self.phi_x = mlp([hidden, hidden, 1]) if coord_updates else None
        self.phi_v = mlp([hidden, hidden, 1]) if vector_out else None
        self.phi_vel = mlp([hidden, hidden, vector_inputs]) if (coord_updates and vector_inputs) else None

    def forward(self, h: Tensor, x: Tensor, seg_i: Segments, seg_j: Segments, edge_feat: Tensor,
                envelope: Tensor | None, inv_degree: Tensor, node_vec: Tensor | None = None,
                ) -> tuple[Tensor, Tensor, Tensor | None]:
        m = self.phi_e(seg_i.gather(self.w_i(h)) + seg_j.gather(self.w_j(h)) + self.w_d(edge_feat))  # [E,H]
        gate = sigmoid_gate(self.phi_inf(m))  # [E,1]
        if envelope is not None:
            gate = gate * envelope[:, None]
        agg = seg_i.sum(gate * m)  # [N,H]
        rel = None
        if self.phi_x is not None or self.phi_v is not None:
            rel = seg_i.gather(x) - seg_j.gather(x)  # [E,3]
        if self.phi_x is not None:
            x = x + seg_i.sum(rel * self.phi_x(m)) * inv_degree[:, None]
        if self.phi_vel is not None and node_vec is not None:
            x = x + (self.phi_vel(h)[:, :, None] * node_vec).sum(1)  # [N,3]
        vec = None
        if self.phi_v is not None:
            vec = seg_i.sum(rel * self.phi_v(m) * gate) * inv_degree[:, None]  # [N,3]
        h = h + self.phi_h(torch.cat([h, agg], dim=-1))
        return h, x, vec


class EGNN(nn.Module):
    """EGNN representation: ``batch -> AtomFeatures(scalars [N,H], vectors [N,1,3])``.

    E(3)-equivariant (rotations, reflections, translations) and permutation-equivariant.
    With ``coord_updates``, ``vectors`` has a second channel: the displacement ``x_final - x``.
    """

    def __init__(self, config: EGNNConfig, elements: tuple[int, ...], edge_attr_dim: int = 0) -> None:
        super().__init__()
        c = self.config = config
        self.embed = ElementEmbedding(elements, c.hidden)
        self.rbf = GaussianRBF(c.num_rbf, c.r_max)
        self.edge_attr_dim = edge_attr_dim
        self.vector_channels = 2 if c.coord_updates else 1
        self.node_in = nn.Linear(c.node_attr_dim, c.hidden, bias=False) if c.node_attr_dim else None
        self.layers = nn.ModuleList(
            EGNNLayer(c.hidden, c.num_rbf, edge_attr_dim, c.coord_updates, vector_out=(k == c.layers - 1),
                      vector_inputs=c.vector_inputs)
            for k in range(c.layers)
        )

    def forward(self, batch: Batch) -> AtomFeatures:
        x = batch.pos
        h = self.embed(batch.z)  # [N,H]
        if self.node_in is not None:
            assert batch.node_attr is not None, "this EGNN was built for per-atom inputs (node_attr)"
            h = h + self.node_in(batch.node_attr.to(h.dtype))
        i, j = batch.edge_index
        degree = torch.bincount(i, minlength=h.shape[0]).clamp(min=1).to(x.dtype)  # [N]
        inv_degree = 1.0 / degree
        seg_i, seg_j = Segments(i, h.shape[0]), Segments(j, h.shape[0])  # shared by all layers
        vec = None
        for layer in self.layers:
            d = (seg_i.gather(x) - seg_j.gather(x)).norm(dim=-1)  # [E], recomputed: coordinates may move
            feat = self.rbf(d)
            if self.edge_attr_dim:
                assert batch.edge_attr is not None, "this EGNN was built for a graph with edge features"
                feat = torch.cat([feat, batch.edge_attr.to(feat.dtype)], dim=-1)
            env = cosine_cutoff(d, self.config.cutoff) if self.config.cutoff else None
            h, x, vec = layer(h, x, seg_i, seg_j, feat, env, inv_degree, batch.node_vec)
        assert vec is not None  # every layer returns a vector feature
        vectors = vec[:, None, :]  # [N,1,3]
        if self.config.coord_updates:
            vectors = torch.cat([vectors, (x - batch.pos)[:, None, :]], dim=1)  # [N,2,3]
        return AtomFeatures(scalars=h, vectors=vectors)


ENTRY = ModelEntry(
    name="egnn",
    config_cls=EGNNConfig,
    build=lambda cfg, elements, edge_attr_dim: EGNN(cfg, elements, edge_attr_dim),
    description="EGNN (Satorras et al. 2021): E(n)-equivariant message passing on distances",
)
