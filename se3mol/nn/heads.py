"""Output heads shared by every family: per-atom scalars -> molecular properties, in physical units.

A representation hands the heads per-atom invariant features ``scalars [N,H]`` and, where it has
them, per-atom equivariant vectors ``vectors [N,C,3]``. Heads own the target normalisation as
buffers, so a state dict alone reproduces predictions in physical units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from se3mol.nn.layers import center_positions, mlp, scatter_mean, scatter_sum
from se3mol.targets import Target
from se3mol.units import DEBYE_TO_E_ANGSTROM


@dataclass
class AtomFeatures:
    """What a representation hands the heads, per atom.

    Attributes:
        scalars: invariant features ``[N,H]``.
        vectors: equivariant (polar) vector features ``[N,C,3]``, or ``None``.
        rank2: symmetric traceless rank-2 features in Cartesian form ``[N,C2,3,3]``, or ``None``.
    """

    scalars: Tensor
    vectors: Tensor | None = None
    rank2: Tensor | None = None


# Output kinds of the model contract: what each named output must do under E(3).
SCALAR, ATOM_SCALAR, VECTOR, TENSOR2 = "scalar", "atom_scalar", "vector", "tensor2"
OUTPUT_KINDS = (SCALAR, ATOM_SCALAR, VECTOR, TENSOR2)


class PropertyHeads(nn.Module):
    """Invariant scalar heads (sum or mean pooled) and dipole heads (vector, plus its norm).

    Output names: ``<target>`` for every target (``[B]``, physical units) and, for dipole targets,
    ``<target>_vector`` (``[B,3]``, Debye).
    """

    def __init__(self, targets: Sequence[Target], hidden: int, vector_channels: int = 0) -> None:
        super().__init__()
        self.targets = list(targets)
        if not self.targets:
            raise ValueError("a model needs at least one target")
        self.readout = mlp([hidden, hidden, len(self.targets)])
        n = len(self.targets)
        # Normalisation, set from training data by ``fit_normalization``; identity until then.
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.register_buffer("atom_mean", torch.zeros(n))
        self.vector_weights = nn.Linear(hidden, max(vector_channels, 1) * n) if vector_channels else None
        self.vector_channels = vector_channels

    def output_kinds(self) -> dict[str, str]:
        kinds: dict[str, str] = {}
        for t in self.targets:
            kinds[t.name] = SCALAR
            if t.kind == "dipole":
                kinds[f"{t.name}_vector"] = VECTOR
        return kinds

    @torch.no_grad()
    def fit_normalization(self, y: Tensor, n_atoms: Tensor) -> None:
        """Set target statistics from training targets ``y [M,T]`` and atom counts ``n_atoms [M]``."""
        y = y.to(self.mean.dtype)
        n = n_atoms.to(y.dtype)
        for k, t in enumerate(self.targets):
            col = y[:, k]
            if t.kind == "scalar" and t.pooling == "sum":
                # Least-squares per-atom offset, so the network learns deviations from y ~ n * atom_mean.
                self.atom_mean[k] = (col * n).sum() / (n * n).sum()
                self.std[k] = (col - n * self.atom_mean[k]).std().clamp(min=1e-6)
                self.mean[k] = 0.0
            else:
                self.mean[k] = col.mean() if t.kind == "scalar" else 0.0
                self.std[k] = col.std().clamp(min=1e-6)

    def forward(self, scalars: Tensor, vectors: Tensor | None, pos: Tensor, batch: Tensor,
                num_graphs: int) -> dict[str, Tensor]:
        s = self.readout(scalars)  # [N,T]
        out: dict[str, Tensor] = {}
        for k, t in enumerate(self.targets):
            sk = s[:, k]
            if t.kind == "dipole":
                vec = self._dipole(sk, k, vectors, scalars, pos, batch, num_graphs)  # [B,3] Debye
                out[f"{t.name}_vector"] = vec
                out[t.name] = torch.sqrt((vec * vec).sum(-1) + 1e-12)
            elif t.pooling == "sum":
                out[t.name] = scatter_sum(sk * self.std[k] + self.atom_mean[k], batch, num_graphs)
            else:
                out[t.name] = scatter_mean(sk, batch, num_graphs) * self.std[k] + self.mean[k]
        return out

    def _dipole(self, q: Tensor, k: int, vectors: Tensor | None, scalars: Tensor, pos: Tensor,
                batch: Tensor, num_graphs: int) -> Tensor:
        # Partial charges [N] (e), neutral per molecule, times centred positions: sum_i q_i r_i.
        q = q - scatter_mean(q, batch, num_graphs)[batch]
        r = center_positions(pos, batch, num_graphs)  # [N,3]
        mu = scatter_sum(q[:, None] * r, batch, num_graphs)  # [B,3] e*A
        if self.vector_weights is not None and vectors is not None:
            c = self.vector_channels
            w = self.vector_weights(scalars).view(-1, len(self.targets), c)[:, k, :]  # [N,C]
            mu = mu + scatter_sum((w[:, :, None] * vectors).sum(1), batch, num_graphs)  # atomic dipoles
        return mu / DEBYE_TO_E_ANGSTROM

    def loss_scale(self) -> Tensor:
        """Per-target scale ``[T]`` that makes the training loss unit-free."""
        return self.std
