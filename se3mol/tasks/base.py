"""The task interface that :class:`~se3mol.training.Trainer` drives.

A task says what a model learns and how it is scored: it owns the data and its split, builds the model,
and computes the training loss, the validation metrics (with the one score that picks the best epoch)
and the test metrics. The trainer owns everything else (optimiser, schedule, EMA, checkpoints, exact
resume, DDP, time budget) and never asks which task it runs.

The three tasks of se3mol: :class:`~se3mol.tasks.PropertyTask` (molecular properties, L1 on standardised
targets, MAE per target in its unit), :class:`~se3mol.tasks.DynamicsTask` (N-body positions, MSE) and
:class:`~se3mol.tasks.ConformerScoreTask` (the conformer score model, denoising score matching loss).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor

from se3mol.graph import GraphConfig
from se3mol.training.config import TrainConfig

#: The model a task trains (a property, score or dynamics model).
ModelT = TypeVar("ModelT", bound=torch.nn.Module)


class Task(ABC, Generic[ModelT]):
    """What a training run learns, from which data, and how it is scored.

    A task is made from the run's :class:`TrainConfig` (and, optionally, data already in memory). After
    ``__init__`` it has ``config`` (the run's config, with whatever the task filled in), ``data``,
    ``split`` (index tensors ``train``, ``val``, ``test``), ``split_info`` (how the split was made, stored
    in every checkpoint) and ``graph`` (the graph batches are built on; set by :meth:`build_model` where
    the model decides it).
    """

    #: The task's name (``TrainConfig.task``).
    name: ClassVar[str]
    #: What :meth:`validate` and :meth:`test` measure: ``mae``, ``mse`` or ``dsm_loss``.
    metric: ClassVar[str]
    #: The keys of the validation and test metrics in ``best.pt`` and ``results.json``.
    val_key: ClassVar[str] = "val"
    test_key: ClassVar[str] = "test"

    config: TrainConfig
    data: Any
    split: dict[str, Tensor]
    split_info: dict[str, Any]
    graph: GraphConfig
    #: How the model's weights were initialised, when not at random (set by the trainer's ``init_from``).
    init_note: str | None = None

    def __init__(self, config: TrainConfig, data: Any = None) -> None:
        """Load the data ``config`` describes (or take ``data``, already in memory) and split it."""

    @abstractmethod
    def build_model(self) -> ModelT:
        """A fresh model for this task (normalisation fitted on the training split, where it has one)."""

    @abstractmethod
    def loss(self, model: ModelT, idx: Tensor, device: torch.device, key: int) -> tuple[Tensor, int]:
        """Training loss of ``model`` on molecules ``idx [B]`` and the number of molecules it covers.

        ``key`` is unique to this step and process (and the same when a resumed run replays the step):
        a task that draws random numbers (noise) seeds them with it.
        """

    @abstractmethod
    def validate(self, model: ModelT, device: torch.device) -> tuple[dict[str, float], float]:
        """Validation metrics of ``model`` and the one score (lower is better) that picks the best epoch."""

    @abstractmethod
    def metric_columns(self, val: dict[str, float]) -> dict[str, float]:
        """Validation metrics as ``metrics.csv`` columns."""

    @abstractmethod
    def checkpoint(self, model: ModelT, **extra: Any) -> dict[str, Any]:
        """The checkpoint dict of ``model`` (with the domain it was trained on) plus ``extra`` entries."""

    @abstractmethod
    def test(self, model: ModelT, device: torch.device) -> tuple[dict[str, float], int, dict[str, Any]]:
        """Test metrics of ``model``, the number of test molecules, and extras: ``metrics`` and ``results``
        entries for ``best.pt`` and ``results.json``, and whatever :meth:`plots` needs."""

    def plots(self, history: list[dict[str, Any]], extra: dict[str, Any], out: Path) -> None:
        """Draw the plots of a finished run into ``out`` (none by default)."""
        return None

    def write_reports(self, out: Path) -> None:
        """Write what the run directory should say about the data, before training (nothing by default)."""
        return None

    def summary(self) -> str | None:
        """A one-line description of the data for the user, or ``None``."""
        return None

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.split.items())
        return f"{type(self).__name__}({sizes})"
