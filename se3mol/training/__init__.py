"""Training: the loop every task runs (:class:`Trainer`), its config, checkpoints, metrics and plots.

What is trained (data, model, loss, metrics) is a task's: see :mod:`se3mol.tasks`.
"""

from se3mol.checkpoint import CheckpointError, atomic_save, load_model, read_checkpoint
from se3mol.training.config import TrainConfig
from se3mol.training.loop import RunResult, Trainer
from se3mol.training.metrics import evaluate

__all__ = ["CheckpointError", "RunResult", "TrainConfig", "Trainer", "atomic_save", "evaluate", "load_model",
           "read_checkpoint"]
