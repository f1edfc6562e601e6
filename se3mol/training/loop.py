"""The training loop: AdamW, warmup + cosine learning rate, L1 loss on standardised targets,
EMA of weights, early stopping, atomic best/last checkpoints and exact resume.

Determinism: the order of training molecules in epoch ``e`` is a permutation drawn from a
generator seeded with ``(seed, e)``, so a run resumed from any saved step replays the same
batches as an uninterrupted one.

Under torchrun, each process takes its share of every batch and DDP averages the gradients; the
plumbing (sharding, reductions, rank 0 doing the writing) is in :mod:`se3mol.training.distributed`.
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from se3mol.data.files import LabelledDataset
from se3mol.data.qm9 import QM9, SPLIT_SEED, attach_bonds, load_qm9, standard_split
from se3mol.graph import GraphConfig
from se3mol.nn.layers import scatter_sum
from se3mol.nn.model import QM9_ELEMENTS, MoleculeModel, build_model
from se3mol.targets import get_target
from se3mol.training.checkpoint import (
    atomic_save,
    atomic_write_text,
    model_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
)
from se3mol.training.config import TrainConfig
from se3mol.training.distributed import Distributed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but no CUDA device is available")
    return torch.device(name)


@dataclass
class RunResult:
    """What a finished run reports: validation and test metrics of the best checkpoint, named for what
    they are (``{"gap": MAE in meV}`` for properties, ``{"mse": ...}`` for N-body dynamics,
    ``{"dsm_loss": ...}`` for the conformer score model; ``metric`` says which)."""

    out: Path
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    wall_time_s: float
    metric: str = "mae"

    @property
    def val_mae(self) -> dict[str, float]:
        """Validation MAE per target (property runs only)."""
        return self._mae(self.val)

    @property
    def test_mae(self) -> dict[str, float]:
        """Test MAE per target (property runs only)."""
        return self._mae(self.test)

    def _mae(self, values: dict[str, float]) -> dict[str, float]:
        if self.metric != "mae":
            raise AttributeError(f"this run measured {self.metric}, not an MAE: read .val and .test")
        return values


class Trainer:
    """Trains one :class:`MoleculeModel` on QM9 or on your own labelled molecules, as described by a
    :class:`TrainConfig`."""

    #: What ``validate`` measures, the key of the validation metrics in ``best.pt``, and the label of progress.
    metric = "mae"
    val_key, test_key = "val_mae", "test_mae"

    def __init__(self, config: TrainConfig, data: QM9 | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.dist = Distributed.from_environment(resolve_device(config.device))
        self.device = self.dist.device
        self.cfg = config = replace(config, world_size=self.dist.world_size)
        self.out = Path(config.out)
        self.progress = progress if self.dist.is_main else None
        self.split_info: dict[str, Any] = {"seed": SPLIT_SEED}
        self.init_note: str | None = None
        # Scatter-adds in the backward pass are otherwise summed in thread-dependent order on CPU, and two
        # runs with one seed drift apart at 1e-9 within a few steps. Measured cost here: none.
        torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
        self.setup_data(data)
        # All three generators: the states saved in last.pt are then those of the seed, not of the process.
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        self.model = self.build_model()
        if config.init_from:
            self.init_weights(config.init_from)
        self.model.to(self.device)
        # Buffers (normalisation, element lookup) are fixed before this copy and never averaged.
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.model = self.dist.wrap(self.model)  # DDP under torchrun; hooks use it as before
        self.global_batch = config.batch_size * config.world_size
        self.steps_per_epoch = math.ceil(len(self.split["train"]) / self.global_batch)
        # Steps the schedule spans: all epochs, or (with max_time) the estimate of what fits in the budget.
        self.total_steps = self.steps_per_epoch * config.epochs
        warm = min(config.warmup_steps, max(self.total_steps // 10, 1))
        if config.max_time:
            warm = min(warm, 200)  # the budget's step count is not known yet; keep the warmup short

        def lr_lambda(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = min((step - warm) / max(self.total_steps - warm, 1), 1.0)
            return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda)
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # batches of the current epoch done
        self.global_step = 0
        self.best_score = float("inf")
        self.best_epoch = -1
        self.bad_epochs = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []
        self.loss_sum, self.n_seen = 0.0, 0  # running train loss of the current epoch

    # ------------------------------------------------ task hooks (a subclass trains another task)
    def setup_data(self, data: QM9 | LabelledDataset | None) -> None:
        """Load the data and set ``self.split`` (a dict of index tensors: train, val, test).

        ``dataset`` ``qm9`` is QM9 with its standard split; anything else is a file of your own molecules
        (:class:`~se3mol.data.files.LabelledDataset`), split as the config says. Both offer the same
        interface, so nothing after this knows which it is.
        """
        self.graph = GraphConfig(self.cfg.graph, self.cfg.cutoff)
        if isinstance(data, LabelledDataset) and self.cfg.dataset == "qm9":
            # Built in Python (from_dataframe, from_files): the config says so, and names its targets.
            self.cfg = replace(self.cfg, dataset="<in-memory LabelledDataset>",
                               targets=[f"{t.name}:{t.unit}:{t.pooling}" for t in data.targets])
        if self.cfg.dataset == "qm9":
            self.targets = [get_target(t) for t in self.cfg.targets]
            self.data = data if data is not None else load_qm9()
            split = standard_split(len(self.data), SPLIT_SEED)
            self.elements: tuple[int, ...] = QM9_ELEMENTS
        else:
            pretrained = self._init_elements()
            self.data, split = data_from_config(self.cfg, pretrained, data)
            self.targets = list(self.data.targets)
            self.split_info = {"method": self.cfg.split, "fractions": list(self.cfg.split_fractions),
                               "seed": self.cfg.split_seed, "val_data": self.cfg.val_data,
                               "test_data": self.cfg.test_data}
            self.elements = pretrained or self.data.elements
        if self.cfg.forces:
            if getattr(self.data, "forces", None) is None:
                raise ValueError(f"--forces {self.cfg.forces}: the data has no per-atom forces")
            if self.targets[0].kind != "scalar" or self.targets[0].pooling != "sum":
                raise ValueError(f"--forces trains the gradient of the first target, an energy summed over atoms; "
                                 f"{self.targets[0].name} is pooled by {self.targets[0].pooling}")
        self.target_names = [t.name for t in self.targets]
        if self.cfg.limit:
            split = {k: v[: self.cfg.limit] for k, v in split.items()}
        self.split = split
        if self.graph.needs_bonds:
            attach_bonds(self.data)

    def _init_elements(self) -> tuple[int, ...] | None:
        """The elements of the model fine-tuned from (``init_from``): the data is limited to them."""
        if not self.cfg.init_from:
            return None
        from se3mol.pretrained import resolve_checkpoint

        try:
            ckpt = read_checkpoint(resolve_checkpoint(self.cfg.init_from))
        except FileNotFoundError as exc:
            raise ValueError(f"--init-from {self.cfg.init_from}: {exc}") from None
        return tuple(ckpt["model"].get("elements", QM9_ELEMENTS))

    def build_model(self) -> torch.nn.Module:
        model = build_model(self.cfg.model, self.targets, self.cfg.model_config, self.elements, self.graph)
        train_idx = self.split["train"]
        model.heads.fit_normalization(self.data.target_values(train_idx, self.target_names),
                                      self.data.counts[train_idx], composition(self.data, train_idx))
        self._scale = model.heads.loss_scale().to(self.device)  # [T]
        if self.cfg.forces:
            f = self.data.forces[self.data.atom_index(train_idx)]  # [A,3]
            f = f[torch.isfinite(f).all(1)]
            self._force_scale = float(f.std()) if len(f) > 1 and float(f.std()) > 0 else 1.0
        self._col_target = model.heads.column_target().to(self.device)  # [D]
        return model

    def training_loss(self, idx: Tensor) -> tuple[Tensor, int]:
        """Loss on training molecules ``idx`` and the number of molecules it covers."""
        batch = self._batch(idx)
        if self.cfg.forces:
            batch = batch.replace(pos=batch.pos.detach().requires_grad_(True))
        out = self.model(batch)
        pred = self.model.heads.stack(out)  # [B,D]
        loss = masked_l1(pred, batch.y, self._scale, self._col_target, len(self.targets))
        if self.cfg.forces:
            f = predicted_forces(out[self.targets[0].name], batch.pos, create_graph=True)  # [N,3]
            loss = loss + self.cfg.forces_weight * masked_force_l1(f, batch.forces) / self._force_scale
        return loss, batch.num_graphs

    def validate(self, model: torch.nn.Module) -> tuple[dict[str, float], float]:
        """Validation metrics of ``model`` and the one score (lower is better) that picks the best epoch."""
        val = evaluate(model, self.data, self.split["val"], self.graph, self.device)
        scale = self._scale.cpu()
        terms = [val[t.name] / float(s) for t, s in zip(self.targets, scale, strict=True)]
        if self.cfg.forces:
            val["forces"] = force_mae(model, self.data, self.split["val"], self.graph, self.device)
            terms.append(self.cfg.forces_weight * val["forces"] / self._force_scale)
        return val, float(np.mean(terms))

    def metric_columns(self, val: dict[str, float]) -> dict[str, float]:
        """Validation metrics as ``metrics.csv`` columns."""
        cols = {f"val_mae_{t.column}": val[t.name] for t in self.targets}
        if "forces" in val:
            cols[f"val_mae_forces_{self.targets[0].slug}_A"] = val["forces"]
        return cols

    def checkpoint_dict(self, model: torch.nn.Module, **extra: Any) -> dict[str, Any]:
        return model_checkpoint(model, domain=self.domain(), **extra)

    def init_weights(self, spec: str) -> None:
        """Start from the weights of checkpoint ``spec`` (path or shipped model name): fine-tuning.

        The checkpoint's model must be the one this run builds (same family, settings, targets, elements
        and graph); its weights, and its normalisation buffers, replace the fresh ones. Only the weights
        are taken: optimiser, schedule and EMA start afresh. Settings that only choose which atom pairs are
        edges (``max_hops``) may differ: no weight or buffer depends on them, so a model can be fine-tuned
        onto a sparser graph.
        """
        from se3mol.pretrained import resolve_checkpoint

        try:
            ckpt = self.dist.on_main(lambda: read_checkpoint(resolve_checkpoint(spec)))
        except FileNotFoundError as exc:
            raise ValueError(f"--init-from {spec}: {exc}") from None
        mine, theirs = self.model.describe(), ckpt.get("model", {})
        diffs = [f"{k}: {theirs.get(k)!r} in {spec}, {mine[k]!r} here" for k in mine
                 if k != "targets" and _weights_view(theirs.get(k)) != _weights_view(mine[k])]
        if diffs:
            raise ValueError(f"--init-from {spec}: its model differs from the one this run builds: "
                             + "; ".join(diffs) + " (match it with --model and --set KEY=VALUE)")
        if theirs.get("targets") == mine.get("targets"):
            self.model.load_state_dict(ckpt["state_dict"])
            self.init_note = f"all weights from {spec}"
        else:
            # Other targets: keep the learned representation, train fresh heads (normalised on this data).
            rep = {k.removeprefix("representation."): v for k, v in ckpt["state_dict"].items()
                   if k.startswith("representation.")}
            self.model.representation.load_state_dict(rep)
            self.init_note = f"representation from {spec}; new heads for {', '.join(self.target_names)}"

    # ----------------------------------------------------------------- state
    @property
    def module(self) -> torch.nn.Module:
        """The model itself, without its DDP wrapper (what is saved, validated and averaged)."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def domain(self) -> dict[str, Any]:
        """What the training molecules covered, so predict can flag extrapolation."""
        return training_domain(self.data, self.split["train"], self.model.elements)

    def _state(self) -> dict[str, Any]:
        return {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "ema": {k: v.detach().cpu() for k, v in self.ema.state_dict().items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_state(),
                "python": json.dumps(random.getstate()),
            },
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "total_steps": self.total_steps,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "elapsed": self.elapsed,
            "history": self.history,
            "loss_sum": self.loss_sum,
            "n_seen": self.n_seen,
        }

    def _checkpoint(self, model: torch.nn.Module, with_state: bool, metrics: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "train_config": self.cfg.to_dict(),
            "split": {**self.split_info, "limit": self.cfg.limit,
                      **{k: v.to(torch.int32) for k, v in self.split.items()}},
            "metrics": metrics,
        }
        if with_state:
            extra["training_state"] = self._state()
        return self.checkpoint_dict(model, **extra)

    def save_last(self) -> None:
        metrics = {"epoch": self.epoch, "step": self.global_step}
        if self.dist.is_main:
            atomic_save(self._checkpoint(self.module, True, metrics), self.out / "last.pt")

    def resume(self, path: Path) -> None:
        ckpt = self.dist.on_main(lambda: read_checkpoint(path))  # every rank restores rank 0's reading
        old = ckpt.get("train_config")
        if old is None or "training_state" not in ckpt:
            raise ValueError(f"{path} holds no training state to resume from")
        before = TrainConfig.from_dict(old)
        diffs = before.differences(self.cfg)
        # More epochs than the run had extends it (also a finished one): the cosine schedule is stretched
        # over the new total, so the learning rate rises to where the longer schedule would be (a warm
        # restart) and decays again by the new end. With max_time the budget sets the schedule instead.
        extended = self.cfg.epochs > before.epochs and not self.cfg.max_time and not before.max_time
        if extended:
            diffs = [d for d in diffs if not d.startswith("epochs:")]
        if diffs:
            hint = ("; --batch-size is per process, so resume on as many processes as before"
                    if old.get("world_size", 1) != self.cfg.world_size else "")
            raise ValueError("refusing to resume with a changed configuration: " + "; ".join(diffs) + hint)
        self.module.load_state_dict(ckpt["state_dict"])
        st = ckpt["training_state"]
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.ema.load_state_dict(st["ema"])
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(_numpy_state_from(st["rng"]["numpy"]))
        random.setstate(_tuples(json.loads(st["rng"]["python"])))
        for k in ("epoch", "step_in_epoch", "global_step", "total_steps", "best_score", "best_epoch", "bad_epochs",
                  "elapsed", "history", "loss_sum", "n_seen"):
            setattr(self, k, st.get(k, getattr(self, k)))  # older states lack loss_sum, n_seen
        if extended:
            self.total_steps = self.steps_per_epoch * self.cfg.epochs
            self.bad_epochs = 0  # early stopping counts afresh in the extension

    # ----------------------------------------------------------------- loop
    def _epoch_order(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        idx = self.split["train"]
        return idx[torch.randperm(len(idx), generator=g)]

    def _batch(self, idx: Tensor):
        return self.data.batch(idx, self.graph, self.target_names).to(self.device)

    def train(self) -> RunResult:
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out)
            atomic_write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n", self.out / "config.json")
            if isinstance(self.data, LabelledDataset):
                self.data.write_report(self.out / "data_report.csv")
        bs = self.global_batch
        out_of_time = False
        budget = self.cfg.max_time or float("inf")
        while (self.epoch < self.cfg.epochs and self.bad_epochs < self.cfg.patience and not out_of_time
               and self.elapsed < budget):
            t0 = time.perf_counter()
            order = self._epoch_order(self.epoch)
            self.model.train()
            if self.step_in_epoch == 0:
                self.loss_sum, self.n_seen = 0.0, 0
            for k in range(self.step_in_epoch, self.steps_per_epoch):
                shard = self.dist.shard(order[k * bs:(k + 1) * bs])
                loss, n = self.training_loss(shard.idx)
                self.opt.zero_grad(set_to_none=True)
                (loss * shard.weight if shard.weight != 1.0 else loss).backward()
                if self.cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.opt.step()
                self.sched.step()
                self.ema.update_parameters(self.module)
                self.global_step += 1
                self.step_in_epoch = k + 1
                n = n if shard.n else 0  # a rank's zero-weight stand-in molecule does not count
                loss_n, n = self.dist.sum(loss.item() * n, n)  # train loss over all ranks
                self.loss_sum += loss_n
                self.n_seen += n
                if self.progress:
                    self.progress({"event": "step", "epoch": self.epoch + 1, "step": k + 1,
                                   "steps": self.steps_per_epoch, "loss": loss_n / max(n, 1)})
                if self.cfg.save_every and self.global_step % self.cfg.save_every == 0:
                    self.elapsed += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_last()
                if self.cfg.max_time:
                    spent = self.elapsed + time.perf_counter() - t0
                    if self.global_step in (20, 100, 500) or k + 1 == self.steps_per_epoch:
                        self._plan_steps(spent)
                    if self.dist.any(spent >= self.cfg.max_time):  # every rank stops at the same step
                        out_of_time = True
                        break
            # Validate both the EMA and the raw weights; keep whichever is better (the EMA lags early on).
            candidates = {"ema": self.ema.module, "raw": self.module}
            vals = self.dist.on_main(partial(_validate_each, self.validate, candidates))  # rank 0 validates
            which = min(vals, key=lambda k: vals[k][1])
            val, score = vals[which]
            self.epoch += 1
            self.step_in_epoch = 0
            self.elapsed += time.perf_counter() - t0
            row = {"epoch": self.epoch, "step": self.global_step,
                   "train_loss": self.loss_sum / max(self.n_seen, 1), **self.metric_columns(val),
                   "weights": which, "lr": self.sched.get_last_lr()[0], "time_s": round(self.elapsed, 1)}
            self.history.append(row)
            if score < self.best_score:
                self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
                metrics = {"epoch": self.epoch, self.val_key: val, "split": "val", "weights": which}
                if self.dist.is_main:
                    atomic_save(self._checkpoint(candidates[which], False, metrics), self.out / "best.pt")
            else:
                self.bad_epochs += 1
            self.save_last()
            if self.dist.is_main:
                _write_metrics_csv(self.history, self.out / "metrics.csv")
            if self.progress:
                self.progress({"event": "epoch", **row, "val": val, "metric": self.metric})
        result = self.dist.on_main(self.finish)  # test metrics and plots: rank 0 alone
        self.dist.close()
        return result

    def _plan_steps(self, spent: float) -> None:
        """Fit the schedule to ``max_time``: the steps done plus those the remaining time allows at the
        pace so far (validation passes included; before the first one, estimated as two inference passes
        over the validation split at three times the training speed)."""
        spent = self.dist.sum(spent)[0] / self.dist.world_size  # one plan on every rank
        per_step = spent / max(self.global_step, 1)
        if not self.history:
            val_share = 2 * len(self.split["val"]) / (3 * self.steps_per_epoch * self.global_batch)
            per_step *= 1 + val_share
        planned = self.global_step + int((self.cfg.max_time - spent) / per_step)
        self.total_steps = max(min(planned, self.steps_per_epoch * self.cfg.epochs), self.global_step + 1)

    def finish(self) -> RunResult:
        """Score the best checkpoint on the test split (:meth:`test`), record it in ``best.pt`` and
        ``results.json``, and draw the plots (:meth:`plots`). The same for every task."""
        from se3mol.pretrained import load_any

        best_path = self.out / "best.pt"
        model, ckpt = load_any(best_path, self.device)
        test, test_n, extra = self.test(model)
        common = {"test_n": test_n, "epochs_run": self.epoch, "wall_time_s": round(self.elapsed, 1)}
        ckpt["metrics"].update({self.test_key: test, **extra.get("metrics", {}), **common,
                                "best_epoch": self.best_epoch})
        atomic_save(ckpt, best_path)
        val = ckpt["metrics"][self.val_key]
        result = {"task": self.cfg.task, "best_epoch": self.best_epoch, self.val_key: val, self.test_key: test,
                  **common, **extra.get("results", {})}
        atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "results.json")
        try:
            self.plots(extra)
        except Exception as exc:  # noqa: BLE001  (a plot must never lose a finished run)
            print(f"warning: could not draw plots: {exc}", file=sys.stderr)
        return RunResult(self.out, self.best_epoch, val, test, self.epoch, self.elapsed, self.metric)

    def test(self, model: torch.nn.Module) -> tuple[dict[str, float], int, dict[str, Any]]:
        """Test metrics of ``model``, the number of test molecules, and extras: ``metrics`` and
        ``results`` entries for ``best.pt`` and ``results.json``, and whatever :meth:`plots` needs."""
        test_idx = self.split["test"]
        test, pred, ref = evaluate(model, self.data, test_idx, self.graph, self.device, return_values=True)
        full = regression_metrics(pred, ref, model.targets)
        if self.cfg.forces:
            test["forces"] = force_mae(model, self.data, test_idx, self.graph, self.device)
        units = {t.name: t.unit for t in self.targets}
        if self.cfg.forces:
            units["forces"] = f"{self.targets[0].unit}/A"
        return test, int(len(test_idx)), {"metrics": {"test_metrics": full},
                                          "results": {"test_metrics": full, "units": units}, "pred": pred,
                                          "ref": ref}

    def plots(self, extra: dict[str, Any]) -> None:
        """``learning_curve.png`` and ``parity_test.png`` of a finished run."""
        from se3mol.training.plots import learning_curve, parity_plot

        learning_curve(self.history, self.targets, self.out / "learning_curve.png")
        parity_plot(extra["pred"], extra["ref"], self.targets, self.out / "parity_test.png")


@torch.no_grad()
def evaluate(model: MoleculeModel, data: QM9, idx: Tensor, graph: GraphConfig, device: torch.device,
             batch_size: int = 256, return_values: bool = False):
    """Mean absolute error per target (user units; tensors: over their nine components) on molecules ``idx``.

    With ``return_values``, also the stacked predictions and references ``[M,D]``.
    """
    model.eval()
    names = [t.name for t in model.targets]
    preds, refs = [], []
    for k in range(0, len(idx), batch_size):
        b = data.batch(idx[k:k + batch_size], graph, names).to(device)
        preds.append(model.heads.stack(model(b)).double().cpu())
        refs.append(b.y.double().cpu())
    p, r = torch.cat(preds), torch.cat(refs)
    col_target = model.heads.column_target()
    mae = {}
    for j, n in enumerate(names):
        err = (p[:, col_target == j] - r[:, col_target == j]).abs()
        mae[n] = float(err[torch.isfinite(err)].mean())  # missing labels (NaN) do not count
    return (mae, p, r) if return_values else mae


def predicted_forces(energy: Tensor, pos: Tensor, create_graph: bool = False) -> Tensor:
    """Forces ``-dE/dpos [N,3]`` of per-molecule energies ``energy [B]`` on positions ``pos [N,3]``
    (which must require grad): the conservative forces, equivariant when the energy is invariant."""
    (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
    return -grad


def masked_force_l1(pred: Tensor, ref: Tensor) -> Tensor:
    """Mean absolute error of force components ``[N,3]`` over atoms with labels (NaN: none)."""
    have = torch.isfinite(ref)
    if not bool(have.any()):
        return pred.sum() * 0.0
    return ((pred - torch.where(have, ref, torch.zeros_like(ref))).abs() * have).sum() / have.sum()


def force_mae(model: MoleculeModel, data: LabelledDataset, idx: Tensor, graph: GraphConfig, device: torch.device,
              batch_size: int = 128) -> float:
    """MAE of the force components ``-dE/dpos`` of the model's first target on molecules ``idx`` (energy
    unit per Angstrom), over atoms with force labels."""
    was = model.training
    model.eval()
    err, n = 0.0, 0
    name = model.targets[0].name
    for k in range(0, len(idx), batch_size):
        b = data.batch(idx[k:k + batch_size], graph, [name]).to(device)
        b = b.replace(pos=b.pos.detach().requires_grad_(True))
        with torch.enable_grad():
            f = predicted_forces(model(b)[name], b.pos).detach()
        have = torch.isfinite(b.forces)
        err += float(((f - torch.where(have, b.forces, torch.zeros_like(f))).abs() * have).sum())
        n += int(have.sum())
    model.train(was)
    return err / max(n, 1)


def masked_l1(pred: Tensor, y: Tensor, scale: Tensor, col_target: Tensor, n_targets: int) -> Tensor:
    """L1 loss of predictions ``pred [B,D]`` against labels ``y [B,D]`` (NaN where missing).

    Each column's error is in units of its target's ``scale [T]``, averaged over the molecules that have
    that label, then within each target (a tensor's nine columns count once), then over the targets
    labelled in this batch. A missing label contributes neither loss nor gradient.
    """
    have = torch.isfinite(y)  # [B,D]
    # NaN must not reach the graph at all: |pred - NaN| * 0 would still give NaN gradients.
    diff = (pred - torch.where(have, y, torch.zeros_like(y))).abs() * have / scale[col_target]  # [B,D]
    count = have.sum(0)  # [D]
    per_col = diff.sum(0) / count.clamp(min=1)  # [D]
    labelled = (count > 0).to(pred.dtype)  # [D]
    per_target = scatter_sum(per_col * labelled, col_target, n_targets)  # [T]
    cols = scatter_sum(labelled, col_target, n_targets)  # [T]
    present = cols > 0
    return (per_target[present] / cols[present]).mean() if bool(present.any()) else pred.sum() * 0.0


def regression_metrics(pred: Tensor, ref: Tensor, targets) -> dict[str, dict[str, float]]:
    """MAE, RMSE, R^2 and the number of labelled molecules per target, from ``pred, ref [M,D]`` in the
    targets' units (NaN in ``ref`` where a label is missing; a tensor target pools its nine columns)."""
    out = {}
    col = 0
    for t in targets:
        p, r = pred[:, col:col + t.width].double(), ref[:, col:col + t.width].double()
        col += t.width
        ok = torch.isfinite(r).all(1)
        p, r = p[ok].reshape(-1), r[ok].reshape(-1)
        if len(r) == 0:
            out[t.name] = {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan"), "n": 0}
            continue
        err = p - r
        ss_tot = float(((r - r.mean()) ** 2).sum())
        out[t.name] = {"mae": float(err.abs().mean()), "rmse": float((err ** 2).mean().sqrt()),
                       "r2": 1.0 - float((err ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
                       "n": int(ok.sum())}
    return out


def data_from_config(cfg: TrainConfig, elements: Sequence[int] | None = None,
                     data: LabelledDataset | None = None) -> tuple[LabelledDataset, dict[str, Tensor]]:
    """The labelled data set and split a config describes (``dataset`` a file; ``val_data``, ``test_data``)."""
    from se3mol.data.files import split_dataset

    keep = [cfg.split.split(":", 1)[1]] if cfg.split.startswith("column:") else []
    read = dict(targets=cfg.targets, smiles_column=cfg.smiles_column, id_column=cfg.id_column,
                embed_seed=cfg.embed_seed, elements=elements, forces=cfg.forces)
    train = data if data is not None else LabelledDataset.from_files([cfg.dataset], keep_fields=keep, **read)
    val = LabelledDataset.from_files([cfg.val_data], **read) if cfg.val_data else None
    test = LabelledDataset.from_files([cfg.test_data], **read) if cfg.test_data else None
    return split_dataset(train, cfg.split, cfg.split_fractions, cfg.split_seed, val, test)


def ema_with_warmup(decay: float):
    """EMA update with the usual warm-up ``min(decay, (1 + t) / (10 + t))``.

    Without it, after ``t`` steps a fraction ``decay**t`` of the average is still the random initial
    weights (9% after 2,400 steps at 0.999), and the averaged model is far worse than the raw one.
    """

    @torch.no_grad()
    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        t = float(num_averaged)
        d = min(decay, (1.0 + t) / (10.0 + t))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


def training_domain(data: QM9, train_idx: Tensor, elements: tuple[int, ...]) -> dict[str, Any]:
    """Elements, and the largest molecule (atoms, heavy atoms), among training molecules ``train_idx``."""
    counts = data.counts[train_idx]
    heavy_per_atom = (data.z > 1).long()
    heavy = torch.zeros(len(data), dtype=torch.long).index_add_(
        0, torch.repeat_interleave(torch.arange(len(data)), data.counts), heavy_per_atom)[train_idx]
    return {"elements": list(elements), "max_atoms": int(counts.max()), "max_heavy_atoms": int(heavy.max()),
            "charge": 0}


def composition(data: QM9 | LabelledDataset, idx: Tensor) -> Tensor:
    """Atoms of each element in molecules ``idx [B]``: ``[B,119]`` (float64)."""
    mol_of_atom = torch.repeat_interleave(torch.arange(len(data)), data.counts)  # [A]
    full = torch.zeros(len(data), 119, dtype=torch.float64)
    full.index_put_((mol_of_atom, data.z.long()), torch.ones(len(mol_of_atom), dtype=torch.float64),
                    accumulate=True)
    return full[idx]


def _validate_each(validate: Callable, models: dict[str, torch.nn.Module]) -> dict[str, tuple[dict, float]]:
    return {k: validate(m) for k, m in models.items()}


def _write_metrics_csv(history: list[dict[str, Any]], path: Path) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(buf.getvalue(), path)


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from(d: dict[str, Any]):
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


# Model settings that choose only which atom pairs are edges: no weight or buffer depends on them.
_EDGE_ONLY_SETTINGS = ("max_hops",)


def _weights_view(value: Any) -> Any:
    """A model description entry without the settings in ``_EDGE_ONLY_SETTINGS`` (what the weights depend on)."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in _EDGE_ONLY_SETTINGS}
    return value
