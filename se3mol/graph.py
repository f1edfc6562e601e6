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

GraphKind = Literal["full", "radius", "bond", "hops"]
NUM_BOND_TYPES = len(BOND_TYPES)
NUM_HOP_TYPES = 3  # 2 bonds apart, 3 bonds apart, further (or not connected)


@dataclass(frozen=True)
class GraphConfig:
    """How atoms are connected.

    Attributes:
        kind: ``"full"`` (every pair), ``"radius"`` (pairs closer than ``cutoff``), ``"bond"``
            (covalent bonds, with one-hot bond types as ``edge_attr``), or ``"hops"`` (every pair, typed
            by the bond graph: one-hot bond type for bonded pairs, else hop order 2, 3 or further; the
            conformer score model's graph).
        cutoff: radius in Angstrom, used by ``"radius"`` only.
        max_hops: ``"hops"`` only: keep just the pairs at most this many bonds apart (e.g. 3: bonds, 2- and
            3-hop pairs, ConfGF's and ClofNet's conformer graph); ``None`` keeps every pair.
    """

    kind: GraphKind = "full"
    cutoff: float = 5.0
    max_hops: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("full", "radius", "bond", "hops"):
            raise ValueError(f"unknown graph kind {self.kind!r}; choose full, radius, bond or hops")
        if self.kind == "radius" and not self.cutoff > 0:
            raise ValueError(f"radius graph needs a positive cutoff, got {self.cutoff}")
        if self.max_hops is not None and (self.kind != "hops" or not 1 <= self.max_hops <= 3):
            raise ValueError(f"max_hops needs a hops graph and is 1, 2 or 3 (got {self.kind!r}, {self.max_hops})")

    @property
    def edge_attr_dim(self) -> int:
        return {"bond": NUM_BOND_TYPES, "hops": NUM_BOND_TYPES + NUM_HOP_TYPES}.get(self.kind, 0)

    @property
    def needs_bonds(self) -> bool:
        return self.kind in ("bond", "hops")

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
        node_attr: extra invariant per-atom inputs ``[N,F]`` (e.g. charges of N-body particles) or ``None``.
        node_vec: per-atom vector inputs ``[N,C,3]`` (e.g. velocities; rotate with the positions,
            unchanged by translations) or ``None``.
        sigma: noise level per molecule ``[B]`` (Angstrom), the conditioning input of a conformer score
            model, or ``None``.
        forces: per-atom force labels ``[N,3]`` (training only; NaN where missing) or ``None``.
        charge: total charge of each molecule ``[B]`` (elementary charges, float), an input of models built
            with ``charge_input``; ``None`` means all neutral.
        mol_attr: invariant per-molecule inputs ``[B,F]`` (a 2D fingerprint's counts) for models built with
            a ``fingerprint``, or ``None``.

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
    node_attr: Tensor | None = None
    node_vec: Tensor | None = None
    sigma: Tensor | None = None
    forces: Tensor | None = None
    charge: Tensor | None = None
    mol_attr: Tensor | None = None

    @property
    def num_atoms(self) -> int:
        return int(self.z.shape[0])

    @property
    def counts(self) -> Tensor:
        """Atoms per molecule ``[B]``."""
        return torch.bincount(self.batch, minlength=self.num_graphs)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Batch:
        """Move tensors to ``device``; cast floating tensors (pos, edge_attr, y, node inputs) to ``dtype``."""
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


def bond_list(mols: Sequence[Molecule]) -> tuple[Tensor, Tensor]:
    """Covalent bonds of ``mols`` once each, as batch atom pairs ``[Eb,2]`` and bond type indices ``[Eb]``."""
    pairs, types, offset = [], [], 0
    for m in mols:
        if m.bonds is None:
            raise ValueError(f"molecule {m.name or '?'} has no bonds; a bond graph needs them")
        assert m.bond_orders is not None  # Molecule fills them in (single bonds) whenever bonds are given
        pairs.append(m.bonds + offset)
        types.append(bond_type_index(m.bond_orders))
        offset += m.n_atoms
    if not pairs or sum(len(p) for p in pairs) == 0:
        return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.concatenate(pairs)).long().reshape(-1, 2), torch.from_numpy(np.concatenate(types))


def bond_edges(mols: Sequence[Molecule]) -> tuple[Tensor, Tensor]:
    """Covalent bonds in both directions ``[2,E]`` and one-hot bond types ``[E,NUM_BOND_TYPES]``."""
    pairs, types = bond_list(mols)
    return both_directions(pairs, types)


def both_directions(pairs: Tensor, types: Tensor) -> tuple[Tensor, Tensor]:
    ei = torch.cat([pairs, pairs.flip(1)]).T.contiguous()  # [2,2Eb]
    attr = torch.nn.functional.one_hot(torch.cat([types, types]), NUM_BOND_TYPES).to(torch.get_default_dtype())
    return ei, attr


def hop_edges(counts: Tensor, pairs: Tensor, types: Tensor, max_hops: int | None = None) -> tuple[Tensor, Tensor]:
    """Every pair within each molecule, typed by the bond graph: ``[2,E]`` and ``edge_attr [E,7]``.

    ``pairs [Eb,2]`` (batch atom indices, each bond once) and ``types [Eb]`` (bond type indices) give
    the bonds. A bonded pair gets its one-hot bond type (columns 0-3); any other pair one of three
    hop columns: 2 bonds apart, 3 bonds apart, or further / not connected. Hop orders come from
    boolean products of per-molecule adjacency matrices ``[B,M,M]`` (M = largest molecule).
    ``max_hops`` (1, 2 or 3) keeps only the pairs at most that many bonds apart.
    """
    if max_hops is not None and not 1 <= max_hops <= 3:
        raise ValueError(f"max_hops must be 1, 2 or 3 (hop orders beyond 3 are not told apart), got {max_hops}")
    counts = counts.long()
    ei = full_edges(counts)
    n, b, m = int(counts.sum()), len(counts), int(counts.max()) if len(counts) else 0
    batch = torch.repeat_interleave(torch.arange(b), counts)  # [N]
    local = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[batch]  # [N]
    adj = torch.zeros(b, m, m)
    btype = torch.full((b, m, m), -1, dtype=torch.long)
    if len(pairs):
        p, q = pairs[:, 0], pairs[:, 1]
        adj[batch[p], local[p], local[q]] = 1.0
        adj[batch[p], local[q], local[p]] = 1.0
        btype[batch[p], local[p], local[q]] = types
        btype[batch[p], local[q], local[p]] = types
    a2 = torch.bmm(adj, adj) > 0
    a3 = torch.bmm(a2.to(adj.dtype), adj) > 0
    i, j = ei[0], ei[1]
    bi, li, lj = batch[i], local[i], local[j]
    t = btype[bi, li, lj]  # [E], -1 where not bonded
    hop = torch.where(a2[bi, li, lj], 0, torch.where(a3[bi, li, lj], 1, 2))  # [E] hop column if not bonded
    col = torch.where(t >= 0, t, NUM_BOND_TYPES + hop)
    if max_hops is not None:
        keep = (t >= 0) | (hop < max_hops - 1)  # bonded, or hop column 0 (2 apart) / 1 (3 apart) within reach
        ei, col = ei[:, keep], col[keep]
    attr = torch.nn.functional.one_hot(col, NUM_BOND_TYPES + NUM_HOP_TYPES).to(torch.get_default_dtype())
    return ei, attr


def bond_type_index(orders: np.ndarray) -> np.ndarray:
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
    charge = torch.tensor([float(m.charge) for m in mols], dtype=pos.dtype)
    return build_batch(z, pos, counts, graph, y=y, mols=mols).replace(charge=charge)


def build_batch(
    z: Tensor, pos: Tensor, counts: Tensor, graph: GraphConfig, y: Tensor | None = None,
    mols: Sequence[Molecule] | None = None,
) -> Batch:
    """Batch from packed atoms ``z [N]``, ``pos [N,3]`` and atoms per molecule ``counts [B]``.

    ``mols`` is needed only for bond and hop graphs (bonds are not geometric).
    """
    batch = torch.repeat_interleave(torch.arange(len(counts)), counts)
    edge_attr = None
    if graph.kind == "full":
        ei = full_edges(counts)
    elif graph.kind == "radius":
        ei = radius_edges(pos, counts, graph.cutoff)
    else:
        if mols is None:
            raise ValueError(f"{graph.kind} graph needs the molecules' bonds")
        pairs, types = bond_list(mols)
        ei, edge_attr = (hop_edges(counts, pairs, types, graph.max_hops) if graph.kind == "hops"
                         else both_directions(pairs, types))
    return Batch(z=z.long(), pos=pos, edge_index=ei, batch=batch, num_graphs=len(counts), edge_attr=edge_attr, y=y)
