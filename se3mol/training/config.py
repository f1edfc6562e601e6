"""The typed configuration of a training run, saved as ``config.json`` in every run directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: The tasks a run can train (``se3mol.tasks`` has one class for each).
TASKS = ("properties", "conformers", "nbody")

# Settings that may differ on resume without changing the computation.
RESUME_FREE = {"device", "out", "resume"}


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    ``train --config runs/x/config.json`` re-runs it; resume refuses a config that differs
    (other than in device or output directory). ``task`` is ``properties`` (QM9 targets) or
    ``conformers`` (the score model of ``se3mol conformers``; ``dataset`` is ``qm9`` or an SDF file) or
    ``nbody`` (position prediction on the N-body system; ``dataset`` is ``nbody``).
    ``batch_size`` is per process; ``world_size`` is the number of processes (1, or what torchrun
    started: the trainer sets it), so one step sees ``batch_size * world_size`` molecules.
    ``max_time`` (seconds of training, validation included) ends the run when spent, at most after
    ``epochs``, and fits the cosine learning-rate schedule to the steps that fit in it.
    ``init_from`` (a checkpoint path or a shipped model name) starts from that model's weights instead
    of random ones (fine-tuning); the model it describes must be the one this config builds, except
    for its targets: a model for other targets keeps only the representation's weights.

    Your own data (``task`` properties, ``dataset`` a file path): ``targets`` are specs
    ``NAME[:UNIT[:sum|mean]]`` read from SD fields, extxyz info keys or CSV columns of that name;
    ``split`` is ``random``, ``scaffold`` or ``column:NAME`` with ``split_fractions`` (train, val, test)
    and ``split_seed``; ``val_data`` / ``test_data`` are files for those parts; ``smiles_column`` and
    ``id_column`` name CSV columns; ``embed_seed`` seeds the 3D embedding of SMILES. ``forces`` names a
    per-atom force array (extxyz ``forces``): the first target is then an energy and its negative gradient
    is trained on those forces too, with ``forces_weight`` times the weight of the energy in the loss.
    ``fingerprint`` (``none`` or ``morgan``) adds each molecule's 2D Morgan count fingerprint as an input
    (see :class:`se3mol.nn.model.MoleculeModel`); a model fine-tuned from one without gets it fresh.
    """

    task: str = "properties"
    model: str = "egnn"
    model_config: dict[str, Any] = field(default_factory=dict)
    dataset: str = "qm9"
    targets: list[str] = field(default_factory=lambda: ["gap"])
    graph: str = "full"
    cutoff: float = 5.0
    epochs: int = 100
    max_time: float | None = None
    batch_size: int = 96
    world_size: int = 1
    lr: float = 5e-4
    min_lr_ratio: float = 0.01
    weight_decay: float = 1e-5
    warmup_steps: int = 1000
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    patience: int = 30
    seed: int = 0
    limit: int | None = None
    save_every: int | None = None
    deterministic: bool = True
    device: str = "auto"
    out: str = "runs/run"
    init_from: str | None = None
    split: str = "random"
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_seed: int = 0
    val_data: str | None = None
    test_data: str | None = None
    smiles_column: str | None = None
    id_column: str | None = None
    embed_seed: int = 0
    forces: str | None = None
    forces_weight: float = 10.0
    max_atoms: int = 400
    embed_timeout: int = 30
    fragments: str = "largest"
    outlier_mad: float = 10.0
    fingerprint: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose {', '.join(TASKS)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training setting(s) {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read training config {path}: {exc}") from None

    def differences(self, other: TrainConfig) -> list[str]:
        """Names and values of the settings in which ``other`` differs (ignoring RESUME_FREE ones)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RESUME_FREE and a[k] != b[k]]
