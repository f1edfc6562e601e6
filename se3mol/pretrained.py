"""Shipped, pretrained models: ``models/NAME.pt`` with model cards ``models/NAME.json``.

``load_pretrained("qm9-egnn-gap")`` loads a shipped model by name; a path to any se3mol
checkpoint works too. Nothing is downloaded: shipped weights are installed with the package.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from se3mol.nn.model import MoleculeModel

DEFAULT_MODEL = "qm9-egnn-gap"


def models_dir() -> Path:
    """Where shipped models live: ``$SE3MOL_MODELS``, the source tree's ``models/`` (editable
    installs), or ``<prefix>/share/se3mol/models`` (wheel installs)."""
    if os.environ.get("SE3MOL_MODELS"):
        return Path(os.environ["SE3MOL_MODELS"])
    in_tree = Path(__file__).resolve().parent.parent / "models"
    if in_tree.is_dir():
        return in_tree
    return Path(sys.prefix) / "share" / "se3mol" / "models"


def list_model_cards() -> list[dict[str, Any]]:
    """The model cards of every shipped model, sorted by name."""
    d = models_dir()
    cards = []
    for card in sorted(d.glob("*.json")) if d.is_dir() else []:
        if (d / f"{card.stem}.pt").is_file():
            info = json.loads(card.read_text())
            info.setdefault("name", card.stem)
            cards.append(info)
    return cards


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """Path of the checkpoint named by ``spec``: a shipped model name, or a file path."""
    p = Path(spec)
    if p.suffix == ".pt" or p.exists() or os.sep in str(spec):
        return p
    shipped = models_dir() / f"{spec}.pt"
    if shipped.is_file():
        return shipped
    names = [c["name"] for c in list_model_cards()]
    raise FileNotFoundError(
        f"no shipped model called {spec!r} and no such file; shipped models: {', '.join(names) or 'none'}"
    )


def load_pretrained(spec: str | os.PathLike = DEFAULT_MODEL,
                    device: str | torch.device = "cpu") -> tuple[MoleculeModel, dict[str, Any]]:
    """Load a shipped model by name, or any se3mol checkpoint by path. Returns (model, checkpoint)."""
    from se3mol.training.checkpoint import load_model

    return load_model(resolve_checkpoint(spec), device)
