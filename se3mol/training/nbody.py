"""Training on the charged-particle N-body system (``se3mol train --dataset nbody``; EGNN paper, sec. 5.1).

Input: positions, velocities (vector inputs) and charges (invariant inputs) of 5 particles; target: the
positions 1,000 simulation steps later; 3,000 / 2,000 / 2,000 trajectories (``se3mol.data.nbody``).
Loss and reported metric: the mean squared error of the predicted positions, averaged over particles
and coordinates, as the EGNN paper's Table 2 reports it. Same loop, EMA, checkpoints and exact resume as
property training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from se3mol.data.nbody import NBodyData, load_nbody
from se3mol.nn.dynamics import dynamics_model
from se3mol.training.checkpoint import module_checkpoint
from se3mol.training.loop import Trainer

SPLITS = ("train", "val", "test")


def _concat(parts: list[NBodyData]) -> NBodyData:
    tensors = ("loc", "vel", "charges", "target_loc", "target_vel", "clipped")
    return NBodyData(**{k: torch.cat([getattr(p, k) for p in parts]) for k in tensors}, split="all",
                     config=parts[0].config)


class NBodyTrainer(Trainer):
    """Position prediction on the N-body data set with a :class:`DynamicsModel`."""

    metric = "mse"
    val_key, test_key = "val", "test"

    def setup_data(self, data: Any) -> None:
        parts = [load_nbody(s) for s in SPLITS]
        if self.cfg.limit:
            parts = [p.head(min(self.cfg.limit, len(p))) for p in parts]
        self.data = _concat(parts)
        start, self.split = 0, {}
        for name, p in zip(SPLITS, parts, strict=True):
            self.split[name] = torch.arange(start, start + len(p))
            start += len(p)
        self.targets = []

    def build_model(self) -> torch.nn.Module:
        return dynamics_model(self.cfg.model, self.cfg.model_config)

    def _mse(self, model: torch.nn.Module, idx: Tensor) -> Tensor:
        nb = self.data.batch(idx)
        batch = nb.graph.to(self.device)
        pred = batch.pos + model(batch)["displacement"]  # [N,3]
        return (pred - nb.target_pos.to(self.device)).pow(2).mean()

    def training_loss(self, idx: Tensor) -> tuple[Tensor, int]:
        return self._mse(self.model, idx), len(idx)

    @torch.no_grad()
    def mse_on(self, model: torch.nn.Module, idx: Tensor, batch_size: int = 500) -> float:
        model.eval()
        total = sum(float(self._mse(model, idx[k:k + batch_size])) * len(idx[k:k + batch_size])
                    for k in range(0, len(idx), batch_size))
        model.train()
        return total / max(len(idx), 1)

    def validate(self, model: torch.nn.Module) -> tuple[dict[str, float], float]:
        mse = self.mse_on(model, self.split["val"])
        return {"mse": mse}, mse

    def metric_columns(self, val: dict[str, float]) -> dict[str, float]:
        return {"val_mse": val["mse"]}

    def domain(self) -> dict[str, Any]:
        return {"dataset": "nbody", "particles": int(self.data.loc.shape[1])}

    def checkpoint_dict(self, model: torch.nn.Module, **extra: Any) -> dict[str, Any]:
        return module_checkpoint(model, domain=self.domain(), **extra)

    def test(self, model: torch.nn.Module) -> tuple[dict[str, float], int, dict[str, Any]]:
        """Test MSE of the predicted positions."""
        return {"mse": self.mse_on(model, self.split["test"])}, int(len(self.split["test"])), {
            "results": {"model": self.cfg.model}}

    def plots(self, extra: dict[str, Any]) -> None:
        from se3mol.training.plots import loss_curve

        loss_curve(self.history, ["train_loss", "val_mse"], self.out / "learning_curve.png")
