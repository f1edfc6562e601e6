"""``se3mol train``: train a model on QM9 with progress, checkpoints, exact resume and test metrics."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from se3mol.cli.common import EXIT_FAILURE, EXIT_USAGE, err, fail
from se3mol.nn.registry import model_names


def _parse_model_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _checkpoint_model_config(spec: str) -> dict[str, Any]:
    """The model settings recorded in checkpoint ``spec`` (path or shipped model name), for --init-from."""
    from se3mol.conformers.score import ScoreModel, recorded_config
    from se3mol.pretrained import resolve_checkpoint
    from se3mol.training.checkpoint import read_checkpoint

    try:
        model = read_checkpoint(resolve_checkpoint(spec))["model"]
        if model.get("kind") == ScoreModel.kind:
            return recorded_config(model)
        return dict(model.get("config", {}))
    except (FileNotFoundError, ValueError) as exc:
        fail(f"--init-from {spec}: {exc}", EXIT_FAILURE)


def train(
    model: Annotated[str | None, typer.Option(
        help=f"Model family: {', '.join(model_names(True))} (default egnn; clofnet for --task conformers).")] = None,
    task: Annotated[str, typer.Option(
        help="properties (QM9 targets) or conformers (score model of `se3mol conformers`).")] = "properties",
    dataset: Annotated[str, typer.Option(
        help="qm9; nbody (N-body dynamics); for --task conformers also an SDF file of conformers.")] = "qm9",
    target: Annotated[list[str] | None, typer.Option(
        help="QM9 target(s): mu alpha homo lumo gap r2 zpve U0 U H G Cv. Repeat for several.")] = None,
    out: Annotated[Path, typer.Option(help="Run directory (config.json, metrics.csv, best.pt, last.pt).")] = Path(
        "runs/run"),
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 100).")] = None,
    max_time: Annotated[str | None, typer.Option(
        help="Training time budget, e.g. 60m, 1.5h, 900s (validation included); the run ends when it is "
             "spent and the learning-rate schedule is fitted to it. --epochs stays an upper bound.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Molecules per batch and process (default 96); a step sees batch size x processes.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 5e-4).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N molecules of each split.")] = None,
    graph: Annotated[str | None, typer.Option(help="Graph: full, radius or bond (default full).")] = None,
    cutoff: Annotated[float | None, typer.Option(help="Radius-graph cutoff in Angstrom (default 5).")] = None,
    save_every: Annotated[int | None, typer.Option(help="Also save last.pt every N steps.")] = None,
    device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda or cuda:N (default auto; with --resume or --config, the run's).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Model setting KEY=VALUE (e.g. --set hidden=128 --set layers=4).")] = None,
    config: Annotated[Path | None, typer.Option(help="Re-run a run: its config.json (flags override it).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory from its last.pt.")] = None,
    init_from: Annotated[str | None, typer.Option(
        help="Fine-tune: start from this checkpoint's weights (a path, or a shipped model name such as "
             "conformers-clofnet-qm9) with a fresh optimiser and schedule. Its model settings are "
             "taken unless --set overrides them.")] = None,
    nproc: Annotated[int, typer.Option(
        min=1, help="Train on N processes of this machine (DistributedDataParallel, launched with torchrun; "
                    "one GPU each on CUDA). For several machines, run torchrun yourself (README).")] = 1,
) -> None:
    """Train a model on QM9 (standard 110k/10k/10,831 split) and report its test MAE.

    With --task conformers, train the conformer score model (ClofNet, denoising score matching on
    coordinates, noise 10 -> 0.01 A in 50 levels) on QM9's training geometries or an SDF collection.
    """
    from se3mol.training import TrainConfig, Trainer
    from se3mol.training.distributed import is_main_process, launched_by_torchrun

    if nproc > 1:
        if launched_by_torchrun():
            fail("--nproc launches torchrun; under torchrun, leave it out (torchrun's --nproc_per_node sets it)",
                 EXIT_USAGE)
        _launch_torchrun(nproc)
    main = is_main_process()  # under torchrun, rank 0 reports; the others would only repeat it
    try:
        base = TrainConfig.from_json(config) if config else (
            TrainConfig.from_json(resume / "config.json") if resume else TrainConfig())
    except ValueError as exc:
        fail(str(exc), EXIT_FAILURE)
    overrides = {k: v for k, v in {
        "task": ("nbody" if dataset == "nbody" else task) if (task != "properties" or dataset == "nbody"
                                                             or not (config or resume)) else None,
        "model": model or (None if (config or resume) else ("clofnet" if task == "conformers" else "egnn")),
        "dataset": dataset if (dataset != "qm9" or not (config or resume)) else None,
        "targets": list(target) if target else None, "epochs": epochs,
        "max_time": _parse_duration(max_time) if max_time else None, "batch_size": batch_size, "lr": lr,
        "seed": seed, "limit": limit, "graph": graph, "cutoff": cutoff, "save_every": save_every,
        "device": device, "out": str(resume or out) if (resume or out != Path("runs/run") or not config) else None,
        "init_from": init_from,
    }.items() if v is not None}
    if init_from and not resume:
        overrides["model_config"] = _checkpoint_model_config(init_from)
    if set_:
        overrides["model_config"] = {**overrides.get("model_config", base.model_config), **_parse_model_options(set_)}
    cfg = TrainConfig.from_dict({**base.to_dict(), **overrides})

    progress = _ProgressView(cfg.epochs, enabled=main)
    try:
        if cfg.task == "conformers":
            from se3mol.conformers.training import ConformerTrainer as trainer_cls
        elif cfg.task == "nbody":
            from se3mol.training.nbody import NBodyTrainer as trainer_cls
        else:
            trainer_cls = Trainer
        trainer = trainer_cls(cfg, progress=progress)
        if resume:
            trainer.resume(resume / "last.pt")
            if main:
                err.print(f"resumed {resume} at epoch {trainer.epoch}, step {trainer.global_step}")
        with progress:
            result = trainer.train()
    except (ValueError, ImportError) as exc:
        fail(str(exc), EXIT_FAILURE)

    if not main:
        return
    if cfg.task in ("conformers", "nbody"):
        err.print(f"best epoch {result.best_epoch}: validation {result.val_mae}, test {result.test_mae}")
        err.print(f"run directory: {result.out}")
        print(json.dumps({"out": str(result.out), "best_epoch": result.best_epoch, "val": result.val_mae,
                          "test": result.test_mae}))
        return
    table = Table(title=f"Test MAE of best checkpoint (epoch {result.best_epoch}) on {len(trainer.split['test'])}"
                        " test molecules")
    table.add_column("target")
    table.add_column("test MAE", justify="right")
    table.add_column("val MAE", justify="right")
    for t in trainer.targets:
        table.add_row(f"{t.name} ({t.unit})", f"{result.test_mae[t.name]:.4g}", f"{result.val_mae[t.name]:.4g}")
    err.print(table)
    err.print(f"run directory: {result.out}")
    # stdout gets one machine-readable line, so scripts can pick up the result.
    print(json.dumps({"out": str(result.out), "best_epoch": result.best_epoch, "test_mae": result.test_mae}))


def _launch_torchrun(nproc: int) -> None:
    """Replace this process with ``torchrun --standalone --nproc_per_node=N -m se3mol <same arguments>``.

    ``exec`` rather than a child process: signals (Ctrl-C, a scheduler's SIGTERM) and the exit status
    then go straight to and from torchrun, which stops all workers when one fails.
    """
    args = sys.argv[1:]
    if "train" not in args:
        fail("--nproc works from the command line (se3mol train ...); from Python, run torchrun", EXIT_USAGE)
    kept: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            kept.append(a)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # N processes share the cores; torchrun would set it and warn
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "se3mol", *kept]
    err.print(f"launching {nproc} processes: torchrun --standalone --nproc_per_node={nproc} -m se3mol "
              + " ".join(kept), highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(sys.executable, cmd, env)


def _parse_duration(text: str) -> float:
    """``"60m"``, ``"1.5h"``, ``"900s"`` -> seconds; a bare number is refused (minutes or seconds?)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) if t and t[-1] in units else None
    except ValueError:
        value = None
    if value is None or value <= 0:
        fail(f"--max-time {text!r}: give a positive duration with a unit, e.g. 60m, 1.5h or 900s", EXIT_USAGE)
    return value * units[t[-1]]


class _ProgressView:
    """Rich progress bar on a terminal; one log line per epoch otherwise (nohup, CI)."""

    def __init__(self, epochs: int, enabled: bool = True) -> None:
        self.epochs = epochs
        self.live = err.is_terminal and enabled
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
            TextColumn("step {task.completed}/{task.total}"), TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[val]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, disable=not self.live)
        self.task = None
        self.last_val = "val MAE -"
        self.t_last: float | None = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, info: dict[str, Any]) -> None:
        if info["event"] == "step":
            if self.task is None:
                self.task = self.bar.add_task("train", total=info["steps"], epoch=info["epoch"], epochs=self.epochs,
                                              loss=info["loss"], val=self.last_val)
            self.bar.update(self.task, completed=info["step"], epoch=info["epoch"], loss=info["loss"],
                            val=self.last_val)
            if not self.live and info["step"] % 100 == 0:
                now = time.perf_counter()
                rate = 100 / (now - self.t_last) if self.t_last else float("nan")
                self.t_last = now
                err.print(f"epoch {info['epoch']}/{self.epochs} step {info['step']}/{info['steps']} "
                          f"loss {info['loss']:.4f} ({rate:.2f} steps/s)", highlight=False)
        else:
            label = "val " if ("val_dsm_loss" in info or "val_mse" in info) else "val MAE "
            self.last_val = label + ", ".join(f"{k} {v:.4g}" for k, v in info["val_mae"].items())
            if self.task is not None:
                self.bar.update(self.task, completed=0, val=self.last_val)
            if not self.live:
                err.print(f"epoch {info['epoch']}/{self.epochs} step {info['step']} "
                          f"loss {info['train_loss']:.4f} {self.last_val} lr {info['lr']:.2e} "
                          f"time {info['time_s']:.0f}s", highlight=False)
