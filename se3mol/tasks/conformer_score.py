"""The conformer score model of ``se3mol conformers``, trained by denoising score matching
(``se3mol train --task conformers``).

Data: the QM9 DFT geometries (standard training split; validation and test losses on the standard
validation and test splits) or a user's SDF collection of conformers (several per molecule allowed;
split by molecule, so no molecule is in two splits). Loss and reported metric: the DSM loss over the
noise levels of ConfGF/ClofNet (geometric, 10 -> 0.01 Angstrom, 50 levels); validation and test use
fixed noise, so values compare across epochs, runs and checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from se3mol.conformers.data import conformer_dataset
from se3mol.conformers.score import (
    LEVELS,
    SIGMA_MAX,
    SIGMA_MIN,
    ScoreModel,
    ScoreModelConfig,
    dsm_loss,
    noise_levels,
    score_checkpoint,
)
from se3mol.data.qm9 import QM9, SPLIT_SEED, PackedMolecules
from se3mol.nn.model import QM9_ELEMENTS
from se3mol.tasks.base import Task
from se3mol.training.config import TrainConfig
from se3mol.training.plots import loss_curve

VAL_MOLECULES = 2000  # validation loss on this many molecules (fixed noise), each epoch
EVAL_SEED = 12345


class ConformerScoreTask(Task[ScoreModel]):
    """Denoising score matching of a :class:`~se3mol.conformers.score.ScoreModel` on 3D conformers."""

    name = "conformers"
    metric = "dsm_loss"

    def __init__(self, config: TrainConfig, data: QM9 | None = None) -> None:
        if config.model != "clofnet":
            raise ValueError(f"the conformer score model is a ClofNet; --model {config.model} cannot train it")
        self.config = config
        self.data, self.split, self.data_info = conformer_dataset(config.dataset, data, config.limit)
        self.split_info = {"seed": SPLIT_SEED}
        self.sigmas = noise_levels()

    def build_model(self) -> ScoreModel:
        elements = tuple(sorted({int(z) for z in self.data.z.unique().tolist()} | set(QM9_ELEMENTS)))
        model = ScoreModel(ScoreModelConfig(**self.config.model_config), elements)
        self.graph = model.graph  # batches are built on the graph the model was made for
        return model

    def loss(self, model: ScoreModel, idx: Tensor, device: torch.device, key: int) -> tuple[Tensor, int]:
        batch = self.data.batch(idx, self.graph).to(device)
        # Noise drawn from a generator keyed by the step (and process): a resumed run replays the same noise.
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + key)
        return dsm_loss(model, batch, self.sigmas, g), batch.num_graphs

    def validate(self, model: ScoreModel, device: torch.device) -> tuple[dict[str, float], float]:
        loss = dsm_loss_on(model, self.data, self.split["val"][:VAL_MOLECULES], device)
        return {"dsm_loss": loss}, loss

    def metric_columns(self, val: dict[str, float]) -> dict[str, float]:
        return {"val_dsm_loss": val["dsm_loss"]}

    def checkpoint(self, model: ScoreModel, **extra: Any) -> dict[str, Any]:
        counts = self.data.counts[self.split["train"]]
        domain = {"elements": list(model.elements), "max_atoms": int(counts.max()), "charge": 0}
        noise = {"sigma_max": SIGMA_MAX, "sigma_min": SIGMA_MIN, "levels": LEVELS}
        return score_checkpoint(model, domain=domain, noise=noise, data=self.data_info, **extra)

    def test(self, model: ScoreModel, device: torch.device) -> tuple[dict[str, float], int, dict[str, Any]]:
        """DSM loss on (up to 2,000) test molecules, with fixed noise."""
        test_idx = self.split["test"][:VAL_MOLECULES]
        test = {"dsm_loss": dsm_loss_on(model, self.data, test_idx, device)} if len(test_idx) else {}
        return test, int(len(test_idx)), {"results": {"data": self.data_info}}

    def plots(self, history: list[dict[str, Any]], extra: dict[str, Any], out: Path) -> None:
        loss_curve(history, ["train_loss", "val_dsm_loss"], out / "learning_curve.png")


@torch.no_grad()
def dsm_loss_on(model: ScoreModel, data: PackedMolecules, idx: Tensor, device: torch.device | str = "cpu",
                batch_size: int = 256) -> float:
    """Mean DSM loss of ``model`` on molecules ``idx`` of ``data`` (packed molecules with bonds), with the
    noise of a fixed seed, so that values are comparable across epochs, runs and checkpoints."""
    was_training = model.training
    model.eval()
    sigmas = noise_levels()
    g = torch.Generator().manual_seed(EVAL_SEED)
    total, n = 0.0, 0
    for k in range(0, len(idx), batch_size):
        batch = data.batch(idx[k:k + batch_size], model.graph).to(device)
        total += float(dsm_loss(model, batch, sigmas, g)) * batch.num_graphs
        n += batch.num_graphs
    model.train(was_training)
    return total / max(n, 1)
