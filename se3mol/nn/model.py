"""``MoleculeModel``: a registered representation plus the shared heads, behind one contract.

A representation is any ``nn.Module`` with ``forward(batch) -> AtomFeatures`` (per-atom invariant
scalars ``[N,H]``, optional vectors ``[N,C,3]`` and rank-2 features ``[N,C2,3,3]``), built by its
registry entry as ``build(config, elements, edge_attr_dim)``, exposing ``vector_channels``,
``rank2_channels`` (0 if it has none) and,
when its config has no ``hidden`` field, ``out_dim``. A representation that is only SE(3)- (not
E(3)-) equivariant sets ``reflection_equivariant = False``.

``forward(batch) -> dict[str, Tensor]``, each output of a declared kind (see ``output_kinds``).
Training, prediction and the equivariance check use only this contract, never a family's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from se3mol.graph import Batch, GraphConfig
from se3mol.nn.heads import PropertyHeads
from se3mol.nn.layers import mlp
from se3mol.nn.registry import get_entry, representation_width
from se3mol.targets import Target

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

QM9_ELEMENTS: tuple[int, ...] = (1, 6, 7, 8, 9)


class Model(nn.Module):
    """The one model contract every se3mol model keeps (property, conformer score and dynamics models).

    ``forward(batch) -> {name: tensor}``, each output of a kind :meth:`output_kinds` declares (invariant
    scalar ``[B]``, per-atom scalar ``[N]``, vector ``[B,3]``, per-atom vector ``[N,3]``, symmetric tensor
    ``[B,3,3]``); ``graph`` is the graph its batches are built on, ``elements`` the atomic numbers it knows,
    and ``describe()`` the plain-data description a checkpoint stores to rebuild it.
    """

    graph: GraphConfig
    elements: tuple[int, ...]

    def output_kinds(self) -> dict[str, str]:
        """Each output's kind (``se3mol.nn.heads.OUTPUT_KINDS``)."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this model (plain data)."""
        raise NotImplementedError

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> Self:
        """The model :meth:`describe` described, with fresh weights."""
        raise NotImplementedError


class MoleculeModel(Model):
    """A model that maps a :class:`~se3mol.graph.Batch` to named molecular properties.

    With a ``fingerprint`` (``{"kind": "morgan", "radius": R, "bits": F}``), the molecule's 2D count fingerprint
    (``batch.mol_attr [B,F]``, computed from its SMILES by the data and prediction layers) is encoded by an MLP and
    added to every atom's invariant features before the readout: invariant, so every symmetry is kept.

    With ``charge_input``, the molecule's total charge (``batch.charge``, zero where ``None``) is an invariant
    input of every atom (the representation's ``node_attr``, one column): such a model scores ions and
    zwitterions; without it, a model knows neutral molecules only.

    >>> from se3mol.targets import get_target
    >>> model = build_model("egnn", [get_target("gap")], config={"hidden": 16, "layers": 2})
    >>> sorted(model.output_kinds())
    ['gap']
    """

    def __init__(self, name: str, config: Any, targets: Sequence[Target], elements: Sequence[int],
                 graph: GraphConfig, charge_input: bool = False, fingerprint: dict[str, Any] | None = None) -> None:
        super().__init__()
        entry = get_entry(name)
        if charge_input:
            if not hasattr(config, "node_attr_dim"):
                raise ValueError(f"model family {name} takes no per-atom inputs, so no total charge: use egnn, "
                                 "clofnet, se3_transformer or tfn")
            config = replace(config, node_attr_dim=1)
        self.charge_input = bool(charge_input)
        cutoff = getattr(config, "cutoff", None)
        if graph.kind == "radius" and cutoff is not None and cutoff > graph.cutoff:
            raise ValueError(f"model cutoff {cutoff} A exceeds the radius graph's {graph.cutoff} A: messages would "
                             "jump to zero at the graph's edge instead of fading out; make them equal")
        self.name = name
        self.config = config
        self.graph = graph
        self.elements = tuple(int(e) for e in elements)
        self.representation = entry.build(config, self.elements, graph.edge_attr_dim)
        hidden = representation_width(config, self.representation)
        self.heads = PropertyHeads(targets, hidden, getattr(self.representation, "vector_channels", 0),
                                   getattr(self.representation, "rank2_channels", 0))
        if self.charge_input:  # the charge enters at zero weight: neutral-only training data leaves it unused
            for sub_name, sub in self.representation.named_modules():
                if sub_name.split(".")[-1] == "node_in" and isinstance(sub, nn.Linear):
                    nn.init.zeros_(sub.weight)
        self.fingerprint = check_fingerprint(fingerprint) if fingerprint else None
        self.fingerprint_net = (mlp([self.fingerprint["bits"], hidden, hidden]) if self.fingerprint is not None
                                else None)

    @property
    def targets(self) -> list[Target]:
        return self.heads.targets

    def output_kinds(self) -> dict[str, str]:
        return self.heads.output_kinds()

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        if self.charge_input:
            q = batch.charge if batch.charge is not None else batch.pos.new_zeros(batch.num_graphs)  # [B]
            batch = batch.replace(node_attr=q.to(batch.pos.dtype)[batch.batch][:, None])  # [N,1]
        feats = self.representation(batch)
        if self.fingerprint_net is not None:
            if batch.mol_attr is None:
                raise ValueError("this model takes a 2D fingerprint of each molecule (batch.mol_attr)")
            f = self.fingerprint_net(torch.log1p(batch.mol_attr.to(feats.scalars.dtype)))  # [B,H]
            feats = replace(feats, scalars=feats.scalars + f[batch.batch])
        return self.heads(feats, batch.pos, batch.batch, batch.num_graphs, batch.z)

    def describe(self) -> dict[str, Any]:
        """Everything needed to rebuild this model, as plain data (checkpoint-safe)."""
        return {
            "name": self.name,
            "config": asdict(self.config),
            "targets": [t.to_dict() for t in self.targets],
            "elements": list(self.elements),
            "graph": self.graph.to_dict(),
            **({"charge_input": True} if self.charge_input else {}),  # absent: a neutral-only model
            **({"fingerprint": dict(self.fingerprint)} if self.fingerprint else {}),
        }

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> MoleculeModel:
        entry = get_entry(d["name"])
        return cls(d["name"], entry.make_config(d["config"]), [Target(**t) for t in d["targets"]],
                   d["elements"], GraphConfig(**d["graph"]), bool(d.get("charge_input", False)),
                   d.get("fingerprint"))


def build_model(name: str, targets: Sequence[Target], config: dict[str, Any] | None = None,
                elements: Sequence[int] = QM9_ELEMENTS, graph: GraphConfig | None = None,
                charge_input: bool = False, fingerprint: dict[str, Any] | None = None) -> MoleculeModel:
    """Build a fresh model of registered family ``name`` for ``targets`` (``charge_input``, ``fingerprint``: see
    :class:`MoleculeModel`)."""
    entry = get_entry(name)
    return MoleculeModel(name, entry.make_config(config), targets, elements, graph or GraphConfig(), charge_input,
                         fingerprint)


#: The 2D fingerprint of ``--fingerprint morgan``: Morgan counts of radius 2 (ECFP4-like) folded to 2048 bits.
MORGAN = {"kind": "morgan", "radius": 2, "bits": 2048}


def check_fingerprint(spec: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint spec, checked: ``{"kind": "morgan", "radius": int >= 1, "bits": int >= 8}``."""
    spec = {**MORGAN, **spec}
    if spec["kind"] != "morgan" or set(spec) != set(MORGAN):
        raise ValueError(f"unknown fingerprint {spec}: se3mol knows {MORGAN} (radius and bits may change)")
    if int(spec["radius"]) < 1 or int(spec["bits"]) < 8:
        raise ValueError(f"fingerprint {spec}: radius must be at least 1 and bits at least 8")
    return {"kind": "morgan", "radius": int(spec["radius"]), "bits": int(spec["bits"])}
