"""The one list of model families. CLI choices, tests and ``se3mol models`` all read it.

>>> from se3mol.nn.registry import model_names
>>> "egnn" in model_names()
True
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from torch import nn

from se3mol.nn.entry import ModelEntry

#: The families shipped with se3mol: name -> the module that defines its ``ENTRY``. A module is imported on the
#: first lookup, not with the registry: the e3nn-based families cost a second to import, which ``se3mol --help``
#: and property prediction with EGNN should not pay.
FAMILIES = {
    "clofnet": "se3mol.nn.clofnet",
    "control-mlp": "se3mol.nn.control",
    "egnn": "se3mol.nn.egnn",
    "se3_transformer": "se3mol.nn.se3_transformer",
    "tfn": "se3mol.nn.tfn",
}

#: The shipped families that are deliberately not equivariant (their ``ENTRY.control``), known without importing
#: them, so that listing the names (``--help``) imports no family.
CONTROLS = frozenset({"control-mlp"})

_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add a family of your own (the shipped ones are listed in :data:`FAMILIES`)."""
    _load_families()
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    """The entry of family ``name`` (its module is imported now if it was not before)."""
    if name not in _REGISTRY and name in FAMILIES:
        _load(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(model_names(True))}") from None


def model_names(include_controls: bool = False) -> list[str]:
    """Every family's name (the deliberately non-equivariant controls with ``include_controls``), without
    importing the shipped families' modules."""
    names = [*FAMILIES, *(n for n in _REGISTRY if n not in FAMILIES)]
    return [n for n in names if include_controls or not (n in CONTROLS if n in FAMILIES else _REGISTRY[n].control)]


def _load(name: str) -> None:
    entry = import_module(FAMILIES[name]).ENTRY
    if entry.name != name:
        raise RuntimeError(f"{FAMILIES[name]} defines family {entry.name!r}, listed as {name!r}")
    if entry.control != (name in CONTROLS):
        raise RuntimeError(f"{FAMILIES[name]}: control={entry.control}, but CONTROLS says otherwise")
    _REGISTRY[name] = entry


def _load_families() -> None:
    for name in FAMILIES:
        if name not in _REGISTRY:
            _load(name)


def representation_width(config: Any, representation: nn.Module) -> int:
    """Channels of a representation's scalar features ``[N,H]``: its config's ``hidden``, or, for a family
    whose config has none, the representation's ``out_dim``."""
    width = getattr(config, "hidden", None) or getattr(representation, "out_dim", None)
    if not isinstance(width, int):
        raise TypeError(f"{type(representation).__name__} states no feature width (hidden or out_dim)")
    return width
