"""Tensor Field Networks (Thomas, Smidt, Kearnes, Yang, Li, Kohlhoff & Riley, arXiv:1802.08219, 2018).

Atom features are direct sums of irreps, ``hidden`` channels of each degree ``0..max_degree``
(``hidden x 0e + hidden x 1o + hidden x 2e`` by default). Each layer (paper sec. 4):

    m_ij = R(|x_ij|) * (f_j (x) Y(x_ij / |x_ij|))            point convolution, x_ij = x_j - x_i; every path
                                                             l_in x l_f -> l_out coupled by Clebsch-Gordan
                                                             coefficients (e3nn), filtered channel by channel
    a_i  = sum_j m_ij / sqrt(deg_i)                          aggregate over neighbours
    f_i <- (f_i + Gate(W_conv a_i + W_self f_i)) / sqrt(2)    self-interaction (o3.Linear), gated nonlinearity,
                                                             residual (scaled to keep the features' size)

``deg_i`` is the number of neighbours of atom ``i``, each weighted by the cutoff envelope when a cutoff
is set (:func:`~se3mol.nn.e3.smooth_degree`). Dividing by its square root keeps the size of ``a_i``
independent of how crowded the neighbourhood is (for roughly independent messages), depends on atom
``i`` alone (so batching cannot change a molecule's result) and stays smooth as atoms cross the cutoff.
The paper's graphs contain the point itself (``r = 0``, where only the ``l_f = 0`` filter survives);
here graphs have no self-loops and ``W_self f_i`` plays that part. The first layer's input is the
element embedding (``hidden x 0e``), so it has no residual; every later layer has one.

Departures from the paper: parity is kept (polar irreps only, so the network is E(3)-, not just
SE(3)-equivariant, see :mod:`se3mol.nn.e3`), and the norm nonlinearity is replaced by e3nn's gate
(scalars through SiLU; each higher-degree channel scaled by the sigmoid of its own scalar gate).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import Tensor, nn

from se3mol.graph import Batch
from se3mol.nn.e3 import (
    AtomFeatureReadout,
    E3Module,
    EdgeEmbedding,
    EdgeFeatures,
    EquivariantKernel,
    InputEmbedding,
    polar_irreps,
    smooth_degree,
    validate_e3_config,
)
from se3mol.nn.entry import ModelEntry
from se3mol.nn.heads import AtomFeatures
from se3mol.nn.layers import scatter_sum

_HALF_SQRT2 = 0.5**0.5


@dataclass
class TFNConfig:
    """Tensor Field Network hyper-parameters.

    Attributes:
        hidden: channels per degree (and width of the invariant features handed to the heads).
        layers: number of convolution layers.
        max_degree: highest degree ``l`` of features and filters (2 gives vectors and rank-2 tensors).
        num_rbf: Gaussians in the distance expansion.
        r_max: largest distance (Angstrom) the expansion resolves.
        cutoff: if set, filters fade smoothly to zero at this distance (use with radius graphs).
        node_attr_dim: width of extra invariant atom inputs ``batch.node_attr`` (0: none).
        vector_inputs: channels of vector atom inputs ``batch.node_vec`` (0: none), fed as ``1o`` features.
    """

    hidden: int = 32
    layers: int = 4
    max_degree: int = 2
    num_rbf: int = 32
    r_max: float = 8.0
    cutoff: float | None = None
    node_attr_dim: int = 0
    vector_inputs: int = 0

    def __post_init__(self) -> None:
        validate_e3_config("tfn", hidden=self.hidden, layers=self.layers, max_degree=self.max_degree,
                           num_rbf=self.num_rbf, r_max=self.r_max, cutoff=self.cutoff)


class TFNLayer(nn.Module):
    """One point convolution + self-interaction + gate: ``[N, irreps_in.dim] -> [N, irreps_out.dim]``."""

    def __init__(self, irreps_in: o3.Irreps, hidden: int, max_degree: int, irreps_sh: o3.Irreps,
                 radial_dim: int) -> None:
        super().__init__()
        target = polar_irreps(hidden, max_degree)
        gated = o3.Irreps([(mul, ir) for mul, ir in target if ir.l > 0])
        self.gate = Gate(f"{hidden}x0e", [nn.functional.silu], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)
        self.kernel = EquivariantKernel(irreps_in, irreps_sh, target, radial_dim, hidden, mixing="channelwise")
        self.conv_linear = o3.Linear(self.kernel.irreps_out, self.gate.irreps_in)
        self.self_linear = o3.Linear(irreps_in, self.gate.irreps_in)
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), self.gate.irreps_out
        self.residual = self.irreps_in == self.irreps_out

    def forward(self, f: Tensor, edges: EdgeFeatures, edge_index: Tensor, inv_sqrt_degree: Tensor) -> Tensor:
        i, j = edge_index
        messages = self.kernel(f[j], edges)  # [E, mid]
        agg = scatter_sum(messages, i, f.shape[0]) * inv_sqrt_degree[:, None]  # [N, mid]
        out = self.gate(self.conv_linear(agg) + self.self_linear(f))  # [N, irreps_out.dim]
        # Both terms have unit-order variance; scaling their sum keeps it so through depth.
        return (f + out) * _HALF_SQRT2 if self.residual else out


class TFN(E3Module):
    """Tensor Field Network representation: ``batch -> AtomFeatures(scalars [N,H], vectors [N,H,3],
    rank2 [N,H,3,3])`` (rank-2 features when ``max_degree >= 2``). E(3)- and permutation-equivariant."""

    def __init__(self, config: TFNConfig, elements: tuple[int, ...], edge_attr_dim: int = 0) -> None:
        super().__init__()
        c = self.config = config
        with self.exact_constants():
            self.embed = InputEmbedding(elements, c.hidden, c.node_attr_dim, c.vector_inputs)
            self.edges = EdgeEmbedding(c.max_degree, c.num_rbf, c.r_max, c.cutoff, edge_attr_dim)
            irreps = self.embed.irreps_out
            self.layers = nn.ModuleList()
            for _ in range(c.layers):
                self.layers.append(TFNLayer(irreps, c.hidden, c.max_degree, self.edges.irreps_sh,
                                            self.edges.radial_dim))
                irreps = self.layers[-1].irreps_out
            self.readout = AtomFeatureReadout(irreps, scalars=c.hidden, vectors=c.hidden, rank2=c.hidden)
        self.vector_channels = self.readout.vector_channels
        self.rank2_channels = self.readout.rank2_channels

    def forward(self, batch: Batch) -> AtomFeatures:
        f = self.embed(batch)  # [N, hidden x 0e (+ C x 1o vector inputs)]
        edges = self.edges(batch)
        inv_sqrt_degree = smooth_degree(batch.edge_index, edges.envelope, f.shape[0], f.dtype).rsqrt()  # [N]
        for layer in self.layers:
            f = layer(f, edges, batch.edge_index, inv_sqrt_degree)
        return self.readout(f)


ENTRY = ModelEntry(
    name="tfn",
    config_cls=TFNConfig,
    build=lambda cfg, elements, edge_attr_dim: TFN(cfg, elements, edge_attr_dim),
    description="Tensor Field Networks (Thomas et al. 2018): e3nn point convolutions of irreps features",
)
