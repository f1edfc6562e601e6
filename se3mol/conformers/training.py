"""Training the conformer score model by denoising score matching (``se3mol train --task conformers``).

Same loop, checkpoints, EMA and exact resume as property training (:class:`~se3mol.training.Trainer`);
only the data, the model and the loss differ. Data: the QM9 DFT geometries (standard training split;
validation and test losses on the standard validation and test splits) or a user's SDF collection of
conformers (several per molecule allowed; split by molecule, so no molecule is in two splits).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from se3mol.conformers.score import ScoreModel, ScoreModelConfig, dsm_loss, noise_levels, score_checkpoint
from se3mol.data.qm9 import QM9
from se3mol.nn.model import QM9_ELEMENTS
from se3mol.training.loop import Trainer

# Noise levels of the issue and of ConfGF/ClofNet: geometric, 10 -> 0.01 Angstrom, 50 levels.
SIGMA_MAX, SIGMA_MIN, LEVELS = 10.0, 0.01, 50
VAL_MOLECULES = 2000  # validation loss on this many molecules (fixed noise), each epoch
EVAL_SEED = 12345


class ConformerTrainer(Trainer):
    """Denoising score matching of a :class:`ScoreModel` on 3D conformers."""

    metric = "dsm_loss"
    val_key, test_key = "val", "test"

    def setup_data(self, data: QM9 | None) -> None:
        from se3mol.conformers.data import conformer_dataset

        if self.cfg.model != "clofnet":
            raise ValueError(f"the conformer score model is a ClofNet; --model {self.cfg.model} cannot train it")

        self.data, self.split, self.data_info = conformer_dataset(self.cfg.dataset, data, self.cfg.limit)
        self.sigmas = noise_levels(SIGMA_MAX, SIGMA_MIN, LEVELS)
        self.targets = []

    def build_model(self) -> torch.nn.Module:
        elements = tuple(sorted({int(z) for z in self.data.z.unique().tolist()} | set(QM9_ELEMENTS)))
        model = ScoreModel(ScoreModelConfig(**self.cfg.model_config), elements)
        self.graph = model.graph  # batches are built on the graph the model was made for
        return model

    def _generator(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + salt)

    def training_loss(self, idx: Tensor) -> tuple[Tensor, int]:
        batch = self.data.batch(idx, self.graph).to(self.device)
        # Noise drawn from a generator keyed by the step: a resumed run replays exactly the same noise.
        # Under torchrun, also by the rank, so that ranks do not give their molecules the same noise
        # (on one process the key is the step, as before).
        key = self.global_step * self.cfg.world_size + self.dist.rank
        return dsm_loss(self.model, batch, self.sigmas, self._generator(key)), batch.num_graphs

    def loss_on(self, model: torch.nn.Module, idx: Tensor, batch_size: int = 256) -> float:
        """Mean DSM loss on molecules ``idx`` with fixed noise (comparable across epochs and runs)."""
        return dsm_loss_on(model, self.data, idx, self.device, batch_size)

    def validate(self, model: torch.nn.Module) -> tuple[dict[str, float], float]:
        loss = self.loss_on(model, self.split["val"][:VAL_MOLECULES])
        return {"dsm_loss": loss}, loss

    def metric_columns(self, val: dict[str, float]) -> dict[str, float]:
        return {"val_dsm_loss": val["dsm_loss"]}

    def domain(self) -> dict[str, Any]:
        counts = self.data.counts[self.split["train"]]
        return {"elements": list(self.model.elements), "max_atoms": int(counts.max()), "charge": 0}

    def checkpoint_dict(self, model: torch.nn.Module, **extra: Any) -> dict[str, Any]:
        noise = {"sigma_max": SIGMA_MAX, "sigma_min": SIGMA_MIN, "levels": LEVELS}
        return score_checkpoint(model, domain=self.domain(), noise=noise, data=self.data_info, **extra)

    def test(self, model: torch.nn.Module) -> tuple[dict[str, float], int, dict[str, Any]]:
        """DSM loss on (up to 2,000) test molecules, with fixed noise."""
        test_idx = self.split["test"][:VAL_MOLECULES]
        test = {"dsm_loss": self.loss_on(model, test_idx)} if len(test_idx) else {}
        return test, int(len(test_idx)), {"results": {"data": self.data_info}}

    def plots(self, extra: dict[str, Any]) -> None:
        from se3mol.training.plots import loss_curve

        loss_curve(self.history, ["train_loss", "val_dsm_loss"], self.out / "learning_curve.png")


@torch.no_grad()
def dsm_loss_on(model: torch.nn.Module, data, idx: Tensor, device: torch.device | str = "cpu",
                batch_size: int = 256) -> float:
    """Mean DSM loss of ``model`` on molecules ``idx`` of ``data`` (packed molecules with bonds), with the
    noise of a fixed seed, so that values are comparable across epochs, runs and checkpoints."""
    was_training = model.training
    model.eval()
    sigmas = noise_levels(SIGMA_MAX, SIGMA_MIN, LEVELS)
    g = torch.Generator().manual_seed(EVAL_SEED)
    total, n = 0.0, 0
    for k in range(0, len(idx), batch_size):
        batch = data.batch(idx[k:k + batch_size], model.graph).to(device)
        total += float(dsm_loss(model, batch, sigmas, g)) * batch.num_graphs
        n += batch.num_graphs
    model.train(was_training)
    return total / max(n, 1)
