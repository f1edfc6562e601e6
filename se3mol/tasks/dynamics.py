"""N-body dynamics: positions of charged particles 1,000 simulation steps later (``--dataset nbody``;
EGNN paper, sec. 5.1).

Input: positions, velocities (vector inputs) and charges (invariant inputs) of 5 particles; target: the
positions 1,000 steps later; 3,000 / 2,000 / 2,000 trajectories (:mod:`se3mol.data.nbody`). Loss and
reported metric: the mean squared error of the predicted positions, averaged over particles and
coordinates, as the EGNN paper's Table 2 reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from se3mol.checkpoint import module_checkpoint
from se3mol.data.nbody import NBodyData, load_nbody
from se3mol.nn.dynamics import DynamicsModel, dynamics_model
from se3mol.tasks.base import Task
from se3mol.training.config import TrainConfig
from se3mol.training.plots import loss_curve

SPLITS: tuple[Literal["train", "val", "test"], ...] = ("train", "val", "test")


class DynamicsTask(Task[DynamicsModel]):
    """Position prediction on the N-body data set with a :class:`~se3mol.nn.dynamics.DynamicsModel`."""

    name = "nbody"
    metric = "mse"

    def __init__(self, config: TrainConfig, data: Any = None) -> None:
        if data is not None:
            raise ValueError("the N-body task simulates its own data; give no data")
        self.config = config
        parts = [load_nbody(s) for s in SPLITS]
        if config.limit:
            parts = [p.head(min(config.limit, len(p))) for p in parts]
        self.data = _concat(parts)
        start, self.split = 0, {}
        for name, p in zip(SPLITS, parts, strict=True):
            self.split[name] = torch.arange(start, start + len(p))
            start += len(p)
        self.split_info = {"dataset": "nbody", "sizes": [len(p) for p in parts]}

    def build_model(self) -> DynamicsModel:
        return dynamics_model(self.config.model, self.config.model_config)

    def _mse(self, model: DynamicsModel, idx: Tensor, device: torch.device) -> Tensor:
        nb = self.data.batch(idx)
        batch = nb.graph.to(device)
        pred = batch.pos + model(batch)["displacement"]  # [N,3]
        return (pred - nb.target_pos.to(device)).pow(2).mean()

    def loss(self, model: DynamicsModel, idx: Tensor, device: torch.device, key: int) -> tuple[Tensor, int]:
        return self._mse(model, idx, device), len(idx)

    @torch.no_grad()
    def mse_on(self, model: DynamicsModel, idx: Tensor, device: torch.device, batch_size: int = 500) -> float:
        """Mean squared position error of ``model`` on trajectories ``idx``."""
        was = model.training
        model.eval()
        total = sum(float(self._mse(model, idx[k:k + batch_size], device)) * len(idx[k:k + batch_size])
                    for k in range(0, len(idx), batch_size))
        model.train(was)
        return total / max(len(idx), 1)

    def validate(self, model: DynamicsModel, device: torch.device) -> tuple[dict[str, float], float]:
        mse = self.mse_on(model, self.split["val"], device)
        return {"mse": mse}, mse

    def metric_columns(self, val: dict[str, float]) -> dict[str, float]:
        return {"val_mse": val["mse"]}

    def checkpoint(self, model: DynamicsModel, **extra: Any) -> dict[str, Any]:
        domain = {"dataset": "nbody", "particles": int(self.data.loc.shape[1])}
        return module_checkpoint(model, domain=domain, **extra)

    def test(self, model: DynamicsModel, device: torch.device) -> tuple[dict[str, float], int, dict[str, Any]]:
        """Test MSE of the predicted positions."""
        return {"mse": self.mse_on(model, self.split["test"], device)}, int(len(self.split["test"])), {
            "results": {"model": self.config.model}}

    def plots(self, history: list[dict[str, Any]], extra: dict[str, Any], out: Path) -> None:
        loss_curve(history, ["train_loss", "val_mse"], out / "learning_curve.png")


def _concat(parts: list[NBodyData]) -> NBodyData:
    tensors = ("loc", "vel", "charges", "target_loc", "target_vel", "clipped")
    return NBodyData(**{k: torch.cat([getattr(p, k) for p in parts]) for k in tensors}, split="all",
                     config=parts[0].config)
