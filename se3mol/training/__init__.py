"""Training: the loop, its config, checkpoints and plots."""

from se3mol.training.checkpoint import CheckpointError, atomic_save, load_model, read_checkpoint
from se3mol.training.config import TrainConfig
from se3mol.training.loop import RunResult, Trainer, evaluate

__all__ = ["CheckpointError", "RunResult", "TrainConfig", "Trainer", "atomic_save", "evaluate", "load_model",
           "read_checkpoint"]
