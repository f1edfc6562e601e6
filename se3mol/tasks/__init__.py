"""Tasks: what a model learns and how it is scored. One :class:`~se3mol.training.Trainer` runs any of them.

>>> from se3mol.tasks import task_names
>>> task_names()
['properties', 'conformers', 'nbody']
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from se3mol.tasks.base import Task
from se3mol.training.config import TASKS, TrainConfig

#: Where each task lives (``TrainConfig.task`` -> module:class). A task's module is imported when it runs, so
#: that training one task never needs another's dependencies (the conformer task's RDKit, say).
_REGISTRY = {
    "properties": "se3mol.tasks.properties:PropertyTask",
    "conformers": "se3mol.tasks.conformer_score:ConformerScoreTask",
    "nbody": "se3mol.tasks.dynamics:DynamicsTask",
}
assert tuple(_REGISTRY) == TASKS


def task_names() -> list[str]:
    """The tasks ``se3mol train --task`` knows."""
    return list(_REGISTRY)


def task_class(name: str) -> type[Task]:
    """The :class:`Task` subclass of task ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; choose {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(import_module(module), cls)


def make_task(config: TrainConfig, data: Any = None) -> Task:
    """The task ``config.task`` describes, with its data loaded (or ``data`` given in memory: a QM9, or a
    :class:`~se3mol.data.files.LabelledDataset` built in Python)."""
    return task_class(config.task)(config, data)


__all__ = ["Task", "make_task", "task_class", "task_names"]
