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

MAX_Z = 118


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
SCALAR, ATOM_SCALAR, VECTOR, TENSOR2, ATOM_VECTOR = "scalar", "atom_scalar", "vector", "tensor2", "atom_vector"
OUTPUT_KINDS = (SCALAR, ATOM_SCALAR, VECTOR, TENSOR2, ATOM_VECTOR)


class PropertyHeads(nn.Module):
    """Heads for every target kind, in physical units.

    - ``scalar``: per-atom readout, summed (extensive) or averaged (intensive) per molecule -> ``[B]``.
    - ``dipole``: partial charges times centred positions plus atomic dipoles from vector features
      -> ``<name>_vector [B,3]`` (Debye) and its norm ``<name> [B]``.
    - ``tensor2``: a symmetric tensor ``[B,3,3]``: per-atom isotropic parts ``a_i I`` plus learned
      combinations of per-atom symmetric traceless features. Those come from the representation
      (``AtomFeatures.rank2``) and, for every model, from outer products of centred positions and of
      vector features (``r r^T - |r|^2 I / 3``), which is how EGNN gets a rank-2 head.

    Output names: ``<target>`` for every target, plus ``<target>_vector`` for dipoles.
    """

    # Buffers [T] (and [T,119]) and layers, declared for type checkers (nn.Module's __getattr__ hides them).
    mean: Tensor
    std: Tensor
    atom_mean: Tensor
    element_offset: Tensor
    readout: nn.Module
    vector_weights: nn.Linear | None
    tensor_weights: nn.Linear | None

    def __init__(self, targets: Sequence[Target], hidden: int, vector_channels: int = 0,
                 rank2_channels: int = 0) -> None:
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
        # Per-element contributions [T,119] of sum-pooled scalar targets (atomic reference energies, as
        # SchNetPack's atomrefs and MACE's E0s): fitted by least squares on the training compositions.
        self.register_buffer("element_offset", torch.zeros(n, MAX_Z + 1))
        self.vector_weights = nn.Linear(hidden, vector_channels * n) if vector_channels else None
        self.vector_channels = vector_channels
        # rank-2 channels available to tensor heads: representation's + positions' + vectors' outer products
        self.tensor_channels = rank2_channels + 1 + vector_channels
        n_tensor = sum(t.kind == "tensor2" for t in self.targets)
        self.tensor_weights = nn.Linear(hidden, self.tensor_channels * n_tensor) if n_tensor else None

    def output_kinds(self) -> dict[str, str]:
        kinds: dict[str, str] = {}
        for t in self.targets:
            kinds[t.name] = TENSOR2 if t.kind == "tensor2" else SCALAR
            if t.kind == "dipole":
                kinds[f"{t.name}_vector"] = VECTOR
        return kinds

    @property
    def width(self) -> int:
        """Columns of the stacked prediction ``[B,D]`` (see :meth:`stack`)."""
        return sum(t.width for t in self.targets)

    def column_target(self) -> Tensor:
        """Index of the target each stacked column belongs to ``[D]``."""
        return torch.cat([torch.full((t.width,), k, dtype=torch.long) for k, t in enumerate(self.targets)])

    def stack(self, out: dict[str, Tensor]) -> Tensor:
        """Predictions as one matrix ``[B,D]``, targets in order, tensors row-major (matches training ``y``)."""
        return torch.cat([out[t.name].reshape(out[t.name].shape[0], -1) for t in self.targets], dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from before per-element offsets: zero offsets reproduce them exactly.
        state_dict.setdefault(prefix + "element_offset", torch.zeros_like(self.element_offset))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit_normalization(self, y: Tensor, n_atoms: Tensor, composition: Tensor | None = None) -> None:
        """Set target statistics from training targets ``y [M,D]`` (NaN where missing) and atom counts
        ``n_atoms [M]``; each target uses the molecules labelled for it.

        With ``composition [M,119]`` (atoms of each element per molecule), a sum-pooled scalar target gets
        per-element offsets fitted by least squares, so the network learns what the composition does not
        explain (for total energies, the composition accounts for almost all of the variance); without
        it, one offset per atom.
        """
        y = y.to(self.mean.dtype)
        n_all = n_atoms.to(y.dtype)
        col = 0
        for k, t in enumerate(self.targets):
            v = y[:, col:col + t.width]
            col += t.width
            have = torch.isfinite(v).all(1)  # molecules labelled for this target (NaN: missing)
            if int(have.sum()) < 2:
                continue  # too few labels for statistics: keep the identity
            v, n = v[have], n_all[have]
            if t.kind == "tensor2":
                iso = v[:, [0, 4, 8]].mean(1)  # trace / 3
                self.atom_mean[k] = (iso * n).sum() / (n * n).sum()
                eye = torch.eye(3, dtype=y.dtype).reshape(1, 9)
                self.std[k] = (v - (n * self.atom_mean[k])[:, None] * eye).std().clamp(min=1e-6)
                self.mean[k] = 0.0
            elif t.kind == "scalar" and t.pooling == "sum" and composition is not None:
                c = composition[have].to(y.dtype)  # [M,119]
                present = c.sum(0) > 0
                a = c[:, present]
                # Ridge-regularised normal equations: stable when two elements always occur together.
                w = torch.linalg.solve(a.T @ a + 1e-8 * torch.eye(a.shape[1], dtype=y.dtype) * (a.T @ a).trace(),
                                       a.T @ v[:, 0])
                self.element_offset[k].zero_()
                self.element_offset[k, present] = w.to(self.element_offset.dtype)
                self.atom_mean[k] = 0.0
                self.std[k] = (v[:, 0] - a @ w).std().clamp(min=1e-6)
                self.mean[k] = 0.0
            elif t.kind == "scalar" and t.pooling == "sum":
                # Least-squares per-atom offset, so the network learns deviations from y ~ n * atom_mean.
                self.element_offset[k].zero_()
                self.atom_mean[k] = (v[:, 0] * n).sum() / (n * n).sum()
                self.std[k] = (v[:, 0] - n * self.atom_mean[k]).std().clamp(min=1e-6)
                self.mean[k] = 0.0
            else:
                self.mean[k] = v[:, 0].mean() if t.kind == "scalar" else 0.0
                self.std[k] = v[:, 0].std().clamp(min=1e-6)

    def forward(self, feats: AtomFeatures, pos: Tensor, batch: Tensor, num_graphs: int,
                z: Tensor | None = None) -> dict[str, Tensor]:
        """Outputs in physical units; ``z [N]`` (atomic numbers) adds the per-element offsets."""
        s = self.readout(feats.scalars)  # [N,T]
        out: dict[str, Tensor] = {}
        tensor_k = 0
        for k, t in enumerate(self.targets):
            sk = s[:, k]
            if t.kind == "dipole":
                vec = self._dipole(sk, k, feats, pos, batch, num_graphs)  # [B,3] Debye
                out[f"{t.name}_vector"] = vec
                out[t.name] = torch.sqrt((vec * vec).sum(-1) + 1e-12)
            elif t.kind == "tensor2":
                out[t.name] = self._tensor(sk, k, tensor_k, feats, pos, batch, num_graphs)  # [B,3,3]
                tensor_k += 1
            elif t.pooling == "sum":
                atom = sk * self.std[k] + self.atom_mean[k]
                if z is not None:
                    atom = atom + self.element_offset[k][z]
                out[t.name] = scatter_sum(atom, batch, num_graphs)
            else:
                out[t.name] = scatter_mean(sk, batch, num_graphs) * self.std[k] + self.mean[k]
        return out

    def _dipole(self, q: Tensor, k: int, feats: AtomFeatures, pos: Tensor, batch: Tensor,
                num_graphs: int) -> Tensor:
        # Partial charges [N] (e), neutral per molecule, times centred positions: sum_i q_i r_i.
        q = q - scatter_mean(q, batch, num_graphs)[batch]
        r = center_positions(pos, batch, num_graphs)  # [N,3]
        mu = scatter_sum(q[:, None] * r, batch, num_graphs)  # [B,3] e*A
        if self.vector_weights is not None and feats.vectors is not None:
            c = self.vector_channels
            w = self.vector_weights(feats.scalars).view(-1, len(self.targets), c)[:, k, :]  # [N,C]
            # atomic dipoles; 1/sqrt(C) keeps the untrained scale independent of the channel count
            mu = mu + scatter_sum((w[:, :, None] * feats.vectors).sum(1), batch, num_graphs) / c**0.5
        return mu / DEBYE_TO_E_ANGSTROM

    def _tensor(self, iso: Tensor, k: int, tensor_k: int, feats: AtomFeatures, pos: Tensor, batch: Tensor,
                num_graphs: int) -> Tensor:
        r = center_positions(pos, batch, num_graphs)  # [N,3]
        parts = [_traceless_outer(r[:, None, :])]  # [N,1,3,3]
        if feats.vectors is not None:
            parts.append(_traceless_outer(feats.vectors))  # [N,C,3,3]
        if feats.rank2 is not None:
            parts.append(feats.rank2)  # [N,C2,3,3]
        t2 = torch.cat(parts, dim=1)  # [N,K,3,3]
        if t2.shape[1] != self.tensor_channels:
            raise ValueError(f"tensor head built for {self.tensor_channels} rank-2 channels, got {t2.shape[1]}")
        c = self.tensor_channels
        assert self.tensor_weights is not None  # built whenever a target is a tensor
        w = self.tensor_weights(feats.scalars)[:, tensor_k * c:(tensor_k + 1) * c]  # [N,K]
        aniso = (w[:, :, None, None] * t2).sum(1) / c**0.5  # [N,3,3]
        eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
        atom = (iso * self.std[k] + self.atom_mean[k])[:, None, None] * eye + self.std[k] * aniso
        return scatter_sum(atom, batch, num_graphs)  # [B,3,3]

    def loss_scale(self) -> Tensor:
        """Per-target scale ``[T]`` that makes the training loss unit-free."""
        return self.std


def _traceless_outer(v: Tensor) -> Tensor:
    """Symmetric traceless ``v v^T - |v|^2 I / 3`` of vectors ``[N,C,3]`` -> ``[N,C,3,3]``."""
    outer = v[..., :, None] * v[..., None, :]
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return outer - (v * v).sum(-1)[..., None, None] * eye / 3
