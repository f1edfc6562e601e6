"""Graphs over molecules and the :class:`Batch` that models consume.

Graphs carry indices only; models derive edge vectors and distances from ``pos`` inside
``forward``, so rotating ``pos`` is all an equivariance check has to do.

Edge convention: ``edge_index[0]`` is the receiving atom ``i``, ``edge_index[1]`` the sending
neighbour ``j``; messages ``m_ij`` are summed over ``j`` into ``i``. Every graph here is symmetric
(both directions present) and has no self-loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from se3mol.molecule import BOND_TYPES, Molecule

GraphKind = Literal["full", "radius", "bond"]
NUM_BOND_TYPES = len(BOND_TYPES)


@dataclass(frozen=True)
class GraphConfig:
    """How atoms are connected.

    Attributes:
        kind: ``"full"`` (every pair), ``"radius"`` (pairs closer than ``cutoff``), or ``"bond"``
            (covalent bonds, with one-hot bond types as ``edge_attr``).
        cutoff: radius in Angstrom, used by ``"radius"`` only.
    """

    kind: GraphKind = "full"
    cutoff: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in ("full", "radius", "bond"):
            raise ValueError(f"unknown graph kind {self.kind!r}; choose full, radius or bond")
        if self.kind == "radius" and not self.cutoff > 0:
            raise ValueError(f"radius graph needs a positive cutoff, got {self.cutoff}")

    @property
    def edge_attr_dim(self) -> int:
        return NUM_BOND_TYPES if self.kind == "bond" else 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Batch:
    """Several molecules as one disconnected graph.

    Attributes:
        z: atomic numbers ``[N]`` (long).
        pos: coordinates in Angstrom ``[N,3]``.
        edge_index: ``[2,E]`` (long), row 0 receiver ``i``, row 1 neighbour ``j``.
        batch: molecule index of each atom ``[N]`` (long), sorted.
        num_graphs: number of molecules ``B``.
        edge_attr: edge features ``[E,F]`` (one-hot bond types for bond graphs) or ``None``.
        y: regression targets ``[B,T]`` (training only) or ``None``.

    >>> from se3mol.molecule import Molecule
    >>> water = Molecule(z=[8, 1, 1], pos=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> b = collate([water, water], GraphConfig("full"))
    >>> b.num_graphs, tuple(b.edge_index.shape)
    (2, (2, 12))
    """

    z: Tensor
    pos: Tensor
    edge_index: Tensor
    batch: Tensor
    num_graphs: int
    edge_attr: Tensor | None = None
    y: Tensor | None = None

    @property
    def num_atoms(self) -> int:
        return int(self.z.shape[0])

    @property
    def counts(self) -> Tensor:
        """Atoms per molecule ``[B]``."""
        return torch.bincount(self.batch, minlength=self.num_graphs)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Batch:
        """Move tensors to ``device``; cast floating tensors (pos, edge_attr, y) to ``dtype``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = v.to(device=device, dtype=dtype if (dtype is not None and v.is_floating_point()) else None)
            out[f.name] = v
        return Batch(**out)

    def replace(self, **changes) -> Batch:
        return replace(self, **changes)


def full_edges(counts: Tensor) -> Tensor:
    """All ordered pairs ``i != j`` within each molecule: ``[2,E]`` for atom counts ``[B]``."""
    counts = counts.long()
    device = counts.device
    offsets = torch.cumsum(counts, 0) - counts  # [B]
    batch = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)  # [N]
    per_node = counts[batch]  # [N] neighbours-with-self of each atom
    i = torch.repeat_interleave(torch.arange(len(batch), device=device), per_node)  # [E+N]
    start = torch.repeat_interleave(torch.cumsum(per_node, 0) - per_node, per_node)
    j = offsets[batch[i]] + (torch.arange(len(i), device=device) - start)
    keep = i != j
    return torch.stack([i[keep], j[keep]])


def radius_edges(pos: Tensor, counts: Tensor, cutoff: float) -> Tensor:
    """Pairs closer than ``cutoff`` (Angstrom) within each molecule: ``[2,E]``."""
    ei = full_edges(counts.to(pos.device))
    d = (pos[ei[0]] - pos[ei[1]]).norm(dim=-1)
    return ei[:, d < cutoff]


def bond_edges(mols: Sequence[Molecule]) -> tuple[Tensor, Tensor]:
    """Covalent bonds in both directions ``[2,E]`` and one-hot bond types ``[E,NUM_BOND_TYPES]``."""
    pairs, types, offset = [], [], 0
    for m in mols:
        if m.bonds is None:
            raise ValueError(f"molecule {m.name or '?'} has no bonds; a bond graph needs them")
        b = m.bonds + offset
        pairs += [b, b[:, ::-1]]
        t = _bond_type_index(m.bond_orders)
        types += [t, t]
        offset += m.n_atoms
    ei = torch.from_numpy(np.concatenate(pairs).T.copy()) if pairs else torch.zeros(2, 0, dtype=torch.long)
    t = torch.from_numpy(np.concatenate(types)) if types else torch.zeros(0, dtype=torch.long)
    attr = torch.nn.functional.one_hot(t, NUM_BOND_TYPES).to(torch.get_default_dtype())
    return ei.long().reshape(2, -1), attr


def _bond_type_index(orders: np.ndarray) -> np.ndarray:
    lookup = np.asarray(BOND_TYPES)
    idx = np.abs(orders[:, None] - lookup[None, :]).argmin(axis=1)
    return idx.astype(np.int64)


def collate(mols: Sequence[Molecule], graph: GraphConfig, y: Tensor | None = None) -> Batch:
    """Join molecules into one :class:`Batch` with edges of the requested ``graph`` kind."""
    if len(mols) == 0:
        raise ValueError("cannot collate an empty list of molecules")
    counts = torch.tensor([m.n_atoms for m in mols], dtype=torch.long)
    z = torch.from_numpy(np.concatenate([m.z for m in mols]))
    pos = torch.from_numpy(np.concatenate([m.pos for m in mols])).to(torch.get_default_dtype())
    return build_batch(z, pos, counts, graph, y=y, mols=mols)


def build_batch(
    z: Tensor, pos: Tensor, counts: Tensor, graph: GraphConfig, y: Tensor | None = None,
    mols: Sequence[Molecule] | None = None,
) -> Batch:
    """Batch from packed atoms ``z [N]``, ``pos [N,3]`` and atoms per molecule ``counts [B]``.

    ``mols`` is needed only for bond graphs (bonds are not geometric).
    """
    batch = torch.repeat_interleave(torch.arange(len(counts)), counts)
    edge_attr = None
    if graph.kind == "full":
        ei = full_edges(counts)
    elif graph.kind == "radius":
        ei = radius_edges(pos, counts, graph.cutoff)
    else:
        if mols is None:
            raise ValueError("bond graph needs the molecules' bonds")
        ei, edge_attr = bond_edges(mols)
    return Batch(z=z.long(), pos=pos, edge_index=ei, batch=batch, num_graphs=len(counts), edge_attr=edge_attr, y=y)
