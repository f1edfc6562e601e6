"""The training loop of every task: AdamW, warmup + cosine learning rate, EMA of weights, early
stopping, atomic best/last checkpoints, exact resume and a time budget. What is learned (data, model,
loss, metrics) is the task's (:mod:`se3mol.tasks`).

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from se3mol.checkpoint import atomic_save, read_checkpoint, remove_stale_temporaries
from se3mol.nn.layers import ElementEmbedding
from se3mol.pretrained import load_any, resolve_checkpoint
from se3mol.runtime import describe_hardware
from se3mol.training.config import TrainConfig
from se3mol.training.distributed import Distributed
from se3mol.writers import atomic_write_text

if TYPE_CHECKING:
    from se3mol.tasks.base import Task


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
    """Trains the model of a :class:`~se3mol.tasks.base.Task` with the settings of its config.

    The trainer owns the optimiser (AdamW), the schedule (warmup + cosine, or fitted to ``max_time``),
    the EMA of weights, early stopping, checkpoints (``best.pt``, ``last.pt``), exact resume, DDP and
    ``metrics.csv``; the task owns the data, the model, the loss and the metrics. Make a task from a
    config with :func:`se3mol.tasks.make_task`.
    """

    def __init__(self, task: Task, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        config = task.config
        self.task = task
        self.dist = Distributed.from_environment(resolve_device(config.device))
        self.device = self.dist.device
        self.cfg = config = replace(config, world_size=self.dist.world_size)
        self.out = Path(config.out)
        self.progress = progress if self.dist.is_main else None
        self.split = task.split
        # Scatter-adds in the backward pass are otherwise summed in thread-dependent order on CPU, and two
        # runs with one seed drift apart at 1e-9 within a few steps. Measured cost here: none.
        torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
        # All three generators: the states saved in last.pt are then those of the seed, not of the process.
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        self.model = task.build_model()
        if config.init_from:
            task.init_note = self.init_weights(config.init_from)
        self.model.to(self.device)
        # Buffers (normalisation, element lookup) are fixed before this copy and never averaged.
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.model = self.dist.wrap(self.model)  # DDP under torchrun
        self.global_batch = config.batch_size * config.world_size
        self.steps_per_epoch = math.ceil(len(self.split["train"]) / self.global_batch)
        # Steps the schedule spans: all epochs, or (with max_time) the estimate of what fits in the budget.
        self.total_steps = self.steps_per_epoch * config.epochs

        def lr_lambda(step: int) -> float:
            # Warm-up over at most a tenth of the steps the schedule spans, read at each step: a time budget's
            # plan (_plan_steps) shortens it with the schedule, so even a run of a few dozen steps reaches the
            # peak rate and decays to the end (it once ended in warm-up, at 35-70% of the peak rate).
            warm = min(config.warmup_steps, max(self.total_steps // 10, 1))
            if config.max_time:
                warm = min(warm, 200)
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

    @property
    def data(self) -> Any:
        """The task's data."""
        return self.task.data

    def init_weights(self, spec: str) -> str:
        """Start from the weights of checkpoint ``spec`` (path or shipped model name): fine-tuning. Returns
        a note of what was taken.

        The checkpoint's model must be the one this run builds (same family, settings, targets, elements
        and graph); its weights, and its normalisation buffers, replace the fresh ones. Only the weights
        are taken: optimiser, schedule and EMA start afresh. Settings that only choose which atom pairs are
        edges (``max_hops``) may differ: no weight or buffer depends on them, so a model can be fine-tuned
        onto a sparser graph. A model for other targets gives only its representation's weights; the
        heads are trained afresh. Elements may differ when the two share at least one: the embedding rows
        of the shared elements are taken, elements new to this run start from fresh rows (a QM9 model
        fine-tuned onto data with S, Cl and Br), every other weight is taken as usual.
        """
        try:
            ckpt = self.dist.on_main(lambda: read_checkpoint(resolve_checkpoint(spec)))
        except FileNotFoundError as exc:
            raise ValueError(f"--init-from {spec}: {exc}") from None
        mine, theirs = self.model.describe(), ckpt.get("model", {})
        diffs = [f"{k}: {theirs.get(k)!r} in {spec}, {mine.get(k)!r} here" for k in set(mine) | set(theirs)
                 if k not in ("targets", "elements", "fingerprint")
                 and _weights_view(theirs.get(k)) != _weights_view(mine.get(k))]
        if theirs.get("fingerprint") and mine.get("fingerprint") and theirs["fingerprint"] != mine["fingerprint"]:
            diffs.append(f"fingerprint: {theirs['fingerprint']} in {spec}, {mine['fingerprint']} here")
        their_elements = [int(e) for e in theirs.get("elements", [])]
        if not set(their_elements) & set(self.model.elements):
            diffs.append(f"elements: {their_elements} in {spec}, {list(self.model.elements)} here (none shared)")
        if diffs:
            raise ValueError(f"--init-from {spec}: its model differs from the one this run builds: "
                             + "; ".join(diffs) + " (match it with --model and --set KEY=VALUE)")
        new = [e for e in self.model.elements if e not in their_elements]
        extra = f"; fresh embeddings for the elements {new}" if new else ""
        if theirs.get("fingerprint") != mine.get("fingerprint"):  # the 2D fingerprint's encoder starts afresh
            extra += "; a fresh 2D fingerprint encoder" if mine.get("fingerprint") else "; its fingerprint unused"
        if theirs.get("targets") == mine.get("targets"):
            state = ckpt["state_dict"]
            if theirs.get("fingerprint") != mine.get("fingerprint"):  # this model's own (fresh or no) encoder
                state = {k: v for k, v in state.items() if not k.startswith("fingerprint_net.")}
                state.update({k: v for k, v in self.model.state_dict().items() if k.startswith("fingerprint_net.")})
            self.model.load_state_dict(_with_elements(self.model, state, their_elements))
            return f"all weights from {spec}{extra}"
        # Other targets: keep the learned representation, train fresh heads (normalised on this data).
        rep = {k.removeprefix("representation."): v for k, v in ckpt["state_dict"].items()
               if k.startswith("representation.")}
        self.model.representation.load_state_dict(_with_elements(self.model.representation, rep, their_elements))
        names = ", ".join(t["name"] for t in mine.get("targets", []))
        return f"representation from {spec}; new heads for {names}{extra}"

    # ----------------------------------------------------------------- state
    @property
    def module(self) -> torch.nn.Module:
        """The model itself, without its DDP wrapper (what is saved, validated and averaged)."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

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
            "split": {**self.task.split_info, "limit": self.cfg.limit,
                      **{k: v.to(torch.int32) for k, v in self.split.items()}},
            "metrics": metrics,
        }
        if with_state:
            extra["training_state"] = self._state()
        return self.task.checkpoint(model, **extra)

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

    def train(self) -> RunResult:
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out)
            atomic_write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n", self.out / "config.json")
            self.task.write_reports(self.out)
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
                key = self.global_step * self.cfg.world_size + self.dist.rank  # unique to step and rank
                loss, n = self.task.loss(self.model, shard.idx, self.device, key)
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
                loss_n, n_all = self.dist.sum(loss.item() * n, n)  # train loss over all ranks
                self.loss_sum += loss_n
                self.n_seen += int(n_all)
                if self.progress:
                    self.progress({"event": "step", "epoch": self.epoch + 1, "step": k + 1,
                                   "steps": self.steps_per_epoch, "loss": loss_n / max(n, 1)})
                if self.cfg.save_every and self.global_step % self.cfg.save_every == 0:
                    self.elapsed += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_last()
                if self.cfg.max_time:
                    spent = self.elapsed + time.perf_counter() - t0
                    if self.global_step in (5, 20, 100, 500) or k + 1 == self.steps_per_epoch:
                        self._plan_steps(spent)
                    if self.dist.any(spent >= self.cfg.max_time):  # every rank stops at the same step
                        out_of_time = True
                        break
            # Validate both the EMA and the raw weights; keep whichever is better (the EMA lags early on).
            candidates = {"ema": self.ema.module, "raw": self.module}
            validate = partial(self.task.validate, device=self.device)
            vals = self.dist.on_main(partial(_validate_each, validate, candidates))  # rank 0 validates
            which = min(vals, key=lambda k: vals[k][1])
            val, score = vals[which]
            self.epoch += 1
            self.step_in_epoch = 0
            self.elapsed += time.perf_counter() - t0
            row = {"epoch": self.epoch, "step": self.global_step,
                   "train_loss": self.loss_sum / max(self.n_seen, 1), **self.task.metric_columns(val),
                   "weights": which, "lr": self.sched.get_last_lr()[0], "time_s": round(self.elapsed, 1)}
            self.history.append(row)
            if score < self.best_score:
                self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
                metrics = {"epoch": self.epoch, self.task.val_key: val, "split": "val", "weights": which}
                if self.dist.is_main:
                    atomic_save(self._checkpoint(candidates[which], False, metrics), self.out / "best.pt")
            else:
                self.bad_epochs += 1
            self.save_last()
            if self.dist.is_main:
                _write_metrics_csv(self.history, self.out / "metrics.csv")
            if self.progress:
                self.progress({"event": "epoch", **row, "val": val, "metric": self.task.metric})
        result = self.dist.on_main(self.finish)  # test metrics and plots: rank 0 alone
        self.dist.close()
        return result

    def _plan_steps(self, spent: float) -> None:
        """Fit the schedule to ``max_time``: the steps done plus those the remaining time allows at the
        pace so far (validation passes included; before the first one, estimated as two inference passes
        over the validation split at three times the training speed)."""
        assert self.cfg.max_time is not None  # only a time budget plans steps
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
        best_path = self.out / "best.pt"
        model, ckpt = load_any(best_path, self.device)
        test, test_n, extra = self.task.test(model, self.device)
        common = {"test_n": test_n, "epochs_run": self.epoch, "wall_time_s": round(self.elapsed, 1),
                  "hardware": describe_hardware(str(self.device), self.cfg.world_size)}
        ckpt["metrics"].update({self.task.test_key: test, **extra.get("metrics", {}), **common,
                                "best_epoch": self.best_epoch})
        atomic_save(ckpt, best_path)
        val = ckpt["metrics"][self.task.val_key]
        result = {"task": self.cfg.task, "best_epoch": self.best_epoch, self.task.val_key: val,
                  self.task.test_key: test,
                  **common, **extra.get("results", {})}
        atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "results.json")
        try:
            self.task.plots(self.history, extra, self.out)
        except Exception as exc:  # noqa: BLE001  (a plot must never lose a finished run)
            print(f"warning: could not draw plots: {exc}", file=sys.stderr)
        return RunResult(self.out, self.best_epoch, val, test, self.epoch, self.elapsed, self.task.metric)


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
    # The legacy tuple form (numpy's stubs also allow the dict form, which legacy=True never returns).
    name, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from(d: dict[str, Any]):
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


# Model settings that choose only which atom pairs are edges: no weight or buffer depends on them.
_EDGE_ONLY_SETTINGS = ("max_hops",)


def _with_elements(module: torch.nn.Module, state: dict[str, Tensor], elements: list[int]) -> dict[str, Tensor]:
    """``state``, a state dict of ``module`` for a model of ``elements``, with every element embedding's table
    rearranged to ``module``'s elements: the rows of shared elements taken from ``state``, the others kept as
    ``module`` initialised them."""
    state = dict(state)
    for name, sub in module.named_modules():
        if not isinstance(sub, ElementEmbedding) or list(sub.elements) == elements:
            continue
        key = f"{name}.embedding.weight" if name else "embedding.weight"
        table = sub.embedding.weight.detach().clone()
        for row, element in enumerate(sub.elements):
            if element in elements:
                table[row] = state[key][elements.index(element)]
        state[key] = table
    return state


def _weights_view(value: Any) -> Any:
    """A model description entry without the settings in ``_EDGE_ONLY_SETTINGS`` (what the weights depend on)."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in _EDGE_ONLY_SETTINGS}
    return value
