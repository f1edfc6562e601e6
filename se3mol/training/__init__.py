"""Training: the loop, its config, checkpoints and plots."""

from se3mol.training.checkpoint import CheckpointError, atomic_save, load_model, read_checkpoint
from se3mol.training.config import TrainConfig
from se3mol.training.loop import RunResult, Trainer, evaluate


def trainer_class(task: str) -> type[Trainer]:
    """The trainer of ``task`` (``TrainConfig.task``): properties, nbody or conformers."""
    if task == "properties":
        return Trainer
    if task == "nbody":
        from se3mol.training.nbody import NBodyTrainer

        return NBodyTrainer
    if task == "conformers":
        from se3mol.conformers.training import ConformerTrainer

        return ConformerTrainer
    raise ValueError(f"unknown task {task!r}; choose properties, conformers or nbody")

__all__ = ["CheckpointError", "RunResult", "TrainConfig", "Trainer", "atomic_save", "evaluate", "load_model",
           "read_checkpoint", "trainer_class"]
