"""``ModelEntry``: what a model family states about itself (name, typed config, builder, description).

Each family module (``egnn.py``, ``tfn.py``, ...) defines ``ENTRY``; :mod:`se3mol.nn.registry` lists the family
modules and collects their entries, so a family never depends on the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """A registered representation family.

    Attributes:
        name: registry name used on the command line.
        config_cls: the family's typed config dataclass.
        build: ``build(config, elements, edge_attr_dim) -> nn.Module`` returning a representation.
        description: one line for ``--help`` and ``se3mol models``.
        control: True for deliberately non-equivariant control models (they exist to show that
            the equivariance check can fail).
    """

    name: str
    config_cls: type
    build: Callable[..., nn.Module]
    description: str
    control: bool = False

    def make_config(self, overrides: dict[str, Any] | None = None) -> Any:
        overrides = dict(overrides or {})
        known = {f.name for f in fields(self.config_cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"{self.name} has no setting(s) {sorted(unknown)}; it has {sorted(known)}")
        return self.config_cls(**overrides)
