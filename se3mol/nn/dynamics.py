"""``DynamicsModel``: any registered representation predicting a displacement per atom (N-body dynamics).

``forward(batch) -> {"displacement": [N,3]}`` (output kind ``atom_vector``): the predicted positions are
``batch.pos + displacement``. The displacement is a learned per-atom combination of the
representation's vector features and the vector inputs themselves (velocities),

    d_i = sum_c w_c(h_i) v_ic,

so it rotates with the input, is unchanged by translations, and needs no knowledge of the family.
Particles carry invariant inputs ``batch.node_attr [N,F]`` (charges) and vector inputs
``batch.node_vec [N,C,3]`` (velocities); the model gives its representation the products
``node_attr_i * node_attr_j`` as edge attributes (EGNN's ``c_i c_j``), computed from the atoms so that a
graph carries indices only.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from se3mol.graph import Batch, GraphConfig
from se3mol.nn.heads import ATOM_VECTOR
from se3mol.nn.layers import mlp
from se3mol.nn.model import Model
from se3mol.nn.registry import get_entry, representation_width


class DynamicsModel(Model):
    """A registered family (``egnn``, ``clofnet``, ``tfn``, ``se3_transformer``) predicting displacements."""

    kind = "dynamics"

    def __init__(self, name: str, config: Any, node_attr_dim: int, vector_inputs: int,
                 elements: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        entry = get_entry(name)
        self.name = name
        self.elements = tuple(int(e) for e in elements)
        self.graph = GraphConfig("full")
        self.node_attr_dim, self.vector_inputs = node_attr_dim, vector_inputs
        self.config = config
        self.representation = entry.build(config, self.elements, node_attr_dim)
        hidden = representation_width(config, self.representation)
        channels = getattr(self.representation, "vector_channels", 0) + vector_inputs
        self.weights = mlp([hidden, hidden, channels])

    def output_kinds(self) -> dict[str, str]:
        return {"displacement": ATOM_VECTOR}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        i, j = batch.edge_index
        if batch.node_attr is None or (self.vector_inputs and batch.node_vec is None):
            raise ValueError("a dynamics model needs per-particle inputs: Batch.node_attr (and node_vec)")
        attr = batch.node_attr.to(batch.pos.dtype)
        feats = self.representation(batch.replace(edge_attr=attr[i] * attr[j]))  # [E,F] charge products
        vecs = [feats.vectors] if feats.vectors is not None else []
        if self.vector_inputs:
            vecs.append(batch.node_vec.to(batch.pos.dtype))  # type: ignore[union-attr]  # checked above
        v = torch.cat(vecs, dim=1)  # [N,C,3]
        w = self.weights(feats.scalars)  # [N,C]
        return {"displacement": (w[:, :, None] * v).sum(1)}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "config": asdict(self.config),
                "node_attr_dim": self.node_attr_dim, "vector_inputs": self.vector_inputs,
                "elements": list(self.elements), "graph": self.graph.to_dict()}

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> DynamicsModel:
        if d.get("kind") != cls.kind:
            raise ValueError(f"checkpoint holds a {d.get('kind', 'property')!r} model, not a dynamics model")
        entry = get_entry(d["name"])
        return cls(d["name"], entry.make_config(d["config"]), d["node_attr_dim"], d["vector_inputs"],
                   tuple(d["elements"]))


def dynamics_model(name: str, config: dict[str, Any] | None, node_attr_dim: int = 1,
                   vector_inputs: int = 1) -> DynamicsModel:
    """A fresh :class:`DynamicsModel` of family ``name``; the family's config learns the input widths."""
    entry = get_entry(name)
    cfg = dict(config or {})
    from dataclasses import fields

    known = {f.name for f in fields(entry.config_cls)}
    for key, value in (("node_attr_dim", node_attr_dim), ("vector_inputs", vector_inputs)):
        if key not in known:
            raise ValueError(f"model {name!r} takes no {key.replace('_', ' ')} (N-body needs charges and "
                             "velocities as inputs)")
        cfg.setdefault(key, value)
    if "coord_updates" in known:
        cfg.setdefault("coord_updates", True)
    return DynamicsModel(name, entry.make_config(cfg), node_attr_dim, vector_inputs)


