"""Shipped, pretrained models: ``models/NAME.pt`` with model cards ``models/NAME.json``.

``load_pretrained("qm9-egnn-gap")`` loads a shipped model by name; a path to any se3mol
checkpoint works too. Nothing is downloaded: shipped weights are installed with the package.

A shipped ensemble is a card whose ``members`` lists its checkpoints (``NAME.pt`` first, then
``NAME.member-K.pt``); its ``std_scale`` holds, per target, the factor that turns the members' spread
into a calibrated standard deviation (fitted on the validation split; see :mod:`se3mol.release`). Where one
model is read (``--init-from``, ``check-equivariance``), the name stands for its first member.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from se3mol.checkpoint import CheckpointError, load_model, read_checkpoint, rebuild
from se3mol.nn.dynamics import DynamicsModel
from se3mol.nn.model import Model, MoleculeModel
from se3mol.nn.score import ScoreModel, recorded_config

DEFAULT_MODEL = "qm9-egnn-all12"


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


def names_a_path(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` is read as a file path (a ``.pt`` name, an existing path, a separator in it) rather
    than as the name of a shipped model."""
    return Path(spec).suffix == ".pt" or Path(spec).exists() or os.sep in str(spec)


def shipped_card(spec: str | os.PathLike) -> dict[str, Any] | None:
    """The model card of shipped model ``spec``, or ``None`` when ``spec`` names no shipped model (a path)."""
    if names_a_path(spec):
        return None
    card = models_dir() / f"{spec}.json"
    if not (card.is_file() and (models_dir() / f"{spec}.pt").is_file()):
        return None
    info: dict[str, Any] = json.loads(card.read_text())
    return info


def std_scale(spec: str | os.PathLike) -> dict[str, float] | None:
    """The calibration factors of the ``_std`` columns of shipped ensemble ``spec`` (per target name), or
    ``None`` when ``spec`` is not one (members given one by one or as a run directory: the raw spread)."""
    card = shipped_card(spec)
    scale = card.get("std_scale") if card else None
    return {str(k): float(v) for k, v in scale.items()} if scale else None


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """Path of the checkpoint named by ``spec``: a shipped model name, a file path, or a run directory
    (its ``best.pt``)."""
    p = Path(spec)
    if p.is_dir() and (p / "best.pt").is_file():
        return p / "best.pt"
    if names_a_path(spec):
        return p
    shipped = models_dir() / f"{spec}.pt"
    if shipped.is_file():
        return shipped
    names = [c["name"] for c in list_model_cards()]
    raise FileNotFoundError(
        f"no shipped model called {spec!r} and no such file; shipped models: {', '.join(names) or 'none'}"
    )


def resolve_checkpoints(spec: str | os.PathLike) -> list[Path]:
    """The checkpoints ``spec`` names: a shipped model, a ``.pt`` file, a run directory (its ``best.pt``),
    the directory of an ensemble (``se3mol train --ensemble N``: every ``member-K/best.pt``), or a shipped
    ensemble's name (every member its card lists).

    Raises:
        FileNotFoundError: if ``spec`` names none of these.
    """
    card = shipped_card(spec)
    if card is not None and card.get("members"):
        paths = [models_dir() / m for m in card["members"]]
        missing = [str(q) for q in paths if not q.is_file()]
        if missing:
            raise FileNotFoundError(f"shipped ensemble {spec} lacks member checkpoints: {', '.join(missing)}")
        return paths
    p = Path(spec)
    if p.is_dir():
        if (p / "best.pt").is_file():
            return [p / "best.pt"]
        members = sorted(p.glob("member-*/best.pt"), key=lambda q: int(q.parent.name.split("-")[1])
                         if q.parent.name.split("-")[1].isdigit() else 0)
        if members:
            return members
        raise FileNotFoundError(f"{p} is a directory with neither best.pt nor member-*/best.pt in it")
    return [resolve_checkpoint(spec)]


def load_pretrained(spec: str | os.PathLike,
                    device: str | torch.device = "cpu") -> tuple[MoleculeModel, dict[str, Any]]:
    """Load a shipped model by name, or any se3mol checkpoint by path. Returns (model, checkpoint).

    Raises:
        ValueError: ``spec`` is an ensemble (a shipped one, such as the default, or a run directory); score
            with all of its members through :meth:`se3mol.Predictor.from_specs`, or load one by its path.
    """
    paths = resolve_checkpoints(spec)
    if len(paths) > 1:
        raise ValueError(f"{spec} is an ensemble of {len(paths)} models; score with all of them through "
                         f"se3mol.Predictor.from_specs([{str(spec)!r}]), or load one of them by path: {paths[0]}")
    return load_model(paths[0], device)


def load_score_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the conformer score model stored in checkpoint ``path``; returns it (eval mode) and the checkpoint."""
    ckpt = read_checkpoint(path)
    return rebuild(ScoreModel, ckpt, path, device, "not a usable conformer score model checkpoint"), ckpt


def load_any(path: str | Path, device: str | torch.device = "cpu") -> tuple[Model, dict[str, Any]]:
    """Rebuild whatever model checkpoint ``path`` holds, dispatching on its recorded kind: a property model
    (:func:`load_model`), a conformer score model (:func:`load_score_model`) or an N-body dynamics model."""
    ckpt = read_checkpoint(path)
    kind = ckpt["model"].get("kind")
    if kind is None:
        return load_model(path, device)
    if kind == "conformer_score":
        return load_score_model(path, device)
    if kind == "dynamics":
        return rebuild(DynamicsModel, ckpt, path, device, "not a usable dynamics model checkpoint"), ckpt
    raise CheckpointError(f"{path} holds a {kind!r} model, which no loader here reads")


def recorded_model_config(spec: str | os.PathLike) -> dict[str, Any]:
    """The model settings (``--set`` keys) recorded in checkpoint ``spec`` (a path or a shipped model's
    name), as ``--init-from`` takes them over. Raises ``ValueError`` for a missing or unusable checkpoint."""
    model = _recorded_model(spec)
    if model.get("kind") == ScoreModel.kind:
        return recorded_config(model)
    return dict(model.get("config", {}))


def recorded_graph(spec: str | os.PathLike) -> dict[str, Any] | None:
    """The graph (``kind``, ``cutoff``) a property model checkpoint ``spec`` was trained on, which
    ``--init-from`` takes over unless ``--graph`` is given; ``None`` for other kinds of model."""
    model = _recorded_model(spec)
    return dict(model["graph"]) if model.get("kind") is None and "graph" in model else None


def _recorded_model(spec: str | os.PathLike) -> dict[str, Any]:
    try:
        return read_checkpoint(resolve_checkpoint(spec))["model"]
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
