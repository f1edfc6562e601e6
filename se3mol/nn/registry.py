"""The one list of model families. CLI choices, tests and ``se3mol models`` all read it.

>>> from se3mol.nn.registry import model_names
>>> "egnn" in model_names()
True
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


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(model_names(True))}") from None


def model_names(include_controls: bool = False) -> list[str]:
    _load_families()
    return [n for n, e in _REGISTRY.items() if include_controls or not e.control]


def _load_families() -> None:
    # Importing a family module registers it; done lazily so importing se3mol stays cheap.
    from se3mol.nn import clofnet, control, egnn, se3_transformer, tfn  # noqa: F401


def representation_width(config: Any, representation: nn.Module) -> int:
    """Channels of a representation's scalar features ``[N,H]``: its config's ``hidden``, or, for a family
    whose config has none, the representation's ``out_dim``."""
    width = getattr(config, "hidden", None) or getattr(representation, "out_dim", None)
    if not isinstance(width, int):
        raise TypeError(f"{type(representation).__name__} states no feature width (hidden or out_dim)")
    return width
