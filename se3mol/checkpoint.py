"""Checkpoint files: one ``torch.save`` dict of plain data that loads with ``weights_only=True``.

Loading never executes code from the file. Writes are atomic: a temporary file in the same
directory, flushed and fsynced, then renamed over the target, so a crash leaves either the old
file or the new one, never a truncated one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import torch

from se3mol._version import __version__
from se3mol.nn.model import Model, MoleculeModel
from se3mol.writers import atomic_open

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable se3mol checkpoint (corrupt, foreign, or of another format)."""


# What se3mol.writers.atomic_open's temporary names look like: "." + target name + "." + PID@HOST + "." + 8 random
# characters + ".tmp" (earlier versions: without PID@HOST).
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``directory``; returns them.

    A process killed mid-write (SIGKILL, power loss) leaves ``.NAME.PID@HOST.XXXXXXXX.tmp`` behind. Its name
    already says it is incomplete, and the file it was to replace is intact; this only tidies up.
    Call it when no other process is writing into ``directory``.
    """
    stale = [p for p in Path(directory).glob(".*.tmp") if _TEMP_NAME.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (:func:`se3mol.writers.atomic_open`)."""
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def module_checkpoint(model: Model, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of any se3mol model with ``describe()`` (property, score or dynamics model):
    format and version, the description, the state dict, plus ``extra`` entries."""
    ckpt = {
        "format_version": FORMAT_VERSION,
        "se3mol_version": __version__,
        "model": model.describe(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    ckpt.update(extra)
    return ckpt


def model_checkpoint(model: MoleculeModel, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of ``model`` plus ``extra`` entries (split, metrics, training state...)."""
    targets = model.describe()["targets"]
    return module_checkpoint(
        model,
        target_names=[t["name"] for t in targets],
        units={t["name"]: t["unit"] for t in targets},
        normalization={
            "mean": model.heads.mean.tolist(),
            "std": model.heads.std.tolist(),
            "atom_mean": model.heads.atom_mean.tolist(),
        },
        **extra,
    )


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in se3mol's words. PyTorch's own text for a file
    that would run code begins with advice to load it with ``weights_only=False``: se3mol never does that, and
    must not seem to suggest it."""
    text = str(exc)
    if "Weights only load failed" in text:
        detail = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "global" in line), "")
        found = re.search(r"GLOBAL (\S+)", detail)
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds Python objects{what} that a safe load refuses; se3mol never runs code from a checkpoint "
                "(a crafted or foreign file, not one se3mol wrote)")
    first = text.splitlines()[0][:200] if text else type(exc).__name__
    return f"corrupt or not a PyTorch file ({type(exc).__name__}: {first})"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint dict safely, with a clear error for anything that is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle errors come in many types)
        raise CheckpointError(f"{path} is not a readable se3mol checkpoint: {_load_failure(exc)}") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is a PyTorch file but not an se3mol checkpoint")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}; this se3mol "
            f"({__version__}) reads format {FORMAT_VERSION}"
        )
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[MoleculeModel, dict[str, Any]]:
    """Rebuild the model stored in checkpoint ``path``; returns it (in eval mode) and the checkpoint."""
    ckpt = read_checkpoint(path)
    if "kind" in ckpt["model"]:
        raise CheckpointError(f"{path} holds a {ckpt['model']['kind']} model, not a property model")
    return rebuild(MoleculeModel, ckpt, path, device, "checkpoint does not match its model description"), ckpt


ModelT = TypeVar("ModelT", bound=Model)


def rebuild(cls: type[ModelT], ckpt: dict[str, Any], path: str | Path, device: str | torch.device = "cpu",
            what: str = "checkpoint does not match its model description") -> ModelT:
    """``cls.from_description`` of checkpoint ``ckpt`` with its weights, in eval mode on ``device``;
    a mismatch is a :class:`CheckpointError` saying ``what`` is wrong with ``path``."""
    try:
        model = cls.from_description(ckpt["model"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {what}: {exc}") from None
    return model.to(device).eval()
