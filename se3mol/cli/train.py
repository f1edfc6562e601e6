"""``se3mol train``: train a model on QM9 with progress, checkpoints, exact resume and test metrics."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from se3mol.cli.common import EXIT_FAILURE, EXIT_OUTPUT, EXIT_USAGE, Justify, err, fail, fragments_option
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


def train(
    model: Annotated[str | None, typer.Option(
        help=f"Model family: {', '.join(model_names(True))} (default egnn; clofnet for --task conformers).")] = None,
    task: Annotated[str, typer.Option(
        help="properties (QM9 targets) or conformers (score model of `se3mol conformers`).")] = "properties",
    dataset: Annotated[str, typer.Option(
        help="qm9; nbody (N-body dynamics); for --task conformers also an SDF file of conformers.")] = "qm9",
    data: Annotated[Path | None, typer.Option(
        help="Your own labelled molecules: SDF (data fields), XYZ/extxyz (info keys), CSV of SMILES (columns) "
             "or any ASE format, .gz too. Labels are read from the fields named by --target.")] = None,
    target: Annotated[list[str] | None, typer.Option(
        help="QM9 target(s): mu alpha homo lumo gap r2 zpve U0 U H G Cv; with --data, NAME[:UNIT[:sum|mean]] "
             "(e.g. logS:log(mol/L), energy:eV:sum; pooling defaults to sum for energy-like units). "
             "Repeat for several.")] = None,
    split: Annotated[str | None, typer.Option(
        help="With --data: random, scaffold (Bemis-Murcko) or column:NAME (a field saying train/val/test); "
             "default random.")] = None,
    split_fractions: Annotated[str | None, typer.Option(
        help="Train,val,test fractions for random and scaffold splits (default 0.8,0.1,0.1).")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed of the split (default 0).")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="With --data: a file that is the validation set.")] = None,
    test: Annotated[Path | None, typer.Option("--test", help="With --data: a file that is the test set.")] = None,
    smiles_column: Annotated[str | None, typer.Option(
        help="CSV column with the SMILES (default: a column called smiles); embedded in 3D with RDKit "
             "ETKDG+MMFF, seeded by --embed-seed, cached.")] = None,
    id_column: Annotated[str | None, typer.Option(help="CSV column with record ids.")] = None,
    embed_seed: Annotated[int | None, typer.Option(help="Seed of the 3D embedding of SMILES (default 0).")] = None,
    forces: Annotated[str | None, typer.Option(
        help="With --data: a per-atom force array of the file (extxyz: forces). The first --target is then an "
             "energy summed over atoms (e.g. energy:eV), and its negative gradient is trained on these "
             "forces.")] = None,
    forces_weight: Annotated[float | None, typer.Option(
        help="Weight of the force term against the energy term, both in units of their spread (default 10).")] = None,
    ensemble: Annotated[int, typer.Option(
        min=1, help="Train N models with seeds seed..seed+N-1 on the same split (run directories "
                    "OUT/member-K); predict with --model OUT reports their mean and _std.")] = 1,
    out: Annotated[Path, typer.Option(help="Run directory (config.json, metrics.csv, best.pt, last.pt).")] = Path(
        "runs/run"),
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 100).")] = None,
    max_time: Annotated[str | None, typer.Option(
        help="Training time budget, e.g. 60m, 1.5h, 900s (validation included); the run ends when it is "
             "spent and the learning-rate schedule is fitted to it. --epochs stays an upper bound.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Molecules per batch and process (default 96 on QM9, 32 with --data); a step sees batch size x "
             "processes.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 5e-4).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N molecules of each split.")] = None,
    graph: Annotated[str | None, typer.Option(
        help="Graph: full, radius or bond. Default: full on QM9; with --data, auto (full for molecules of at most "
             "30 atoms on average, else radius).")] = None,
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
    max_atoms: Annotated[int | None, typer.Option(
        "--max-atoms", min=1, help="With --data: atoms per record (hydrogens included) above which a record is "
        "skipped, with its reason in data_report.csv (default 400).")] = None,
    embed_timeout: Annotated[int | None, typer.Option(
        "--embed-timeout", min=1, help="With --data: seconds RDKit's 3D embedding may spend per attempt on one "
        "molecule (default 30).")] = None,
    fragments: Annotated[str | None, typer.Option(
        "--fragments", help="With --data: records of several fragments (salts, hydrates, mixtures): largest "
        "(default: the largest organic fragment, neutralised where its counter-ions were removed), all, or error "
        "(skipped).")] = None,
    outlier_mad: Annotated[float | None, typer.Option(
        "--outlier-mad", min=0, help="With --data: drop (and report in data_report.csv) labels further than this "
        "many robust standard deviations (1.4826 x MAD) from their target's median (default 10; 0 keeps all).")
    ] = None,
    fingerprint: Annotated[str | None, typer.Option(
        "--fingerprint", help="none, morgan (each molecule's 2D Morgan count fingerprint, radius 2, 2048 bits, from "
        "its SMILES, is an input beside the 3D structure) or auto (morgan when every molecule has a SMILES). "
        "Default: auto with --data, none on QM9.")] = None,
    nproc: Annotated[int, typer.Option(
        min=1, help="Train on N processes of this machine (DistributedDataParallel, launched with torchrun; "
                    "one GPU each on CUDA). For several machines, run torchrun yourself (README).")] = 1,
) -> None:
    """Train a model on QM9 (standard 110k/10k/10,831 split) or on your own labelled molecules (--data),
    and report its test MAE.

    With --task conformers, train the conformer score model (ClofNet, denoising score matching on
    coordinates, noise 10 -> 0.01 A in 50 levels) on QM9's training geometries or an SDF collection.
    """
    from se3mol.pretrained import recorded_graph, recorded_model_config
    from se3mol.tasks.run import is_ensemble, run_config_path
    from se3mol.training import TrainConfig
    from se3mol.training.distributed import is_main_process, launched_by_torchrun

    if nproc > 1:
        if launched_by_torchrun():
            fail("--nproc launches torchrun; under torchrun, leave it out (torchrun's --nproc_per_node sets it)",
                 EXIT_USAGE)
        _launch_torchrun(nproc)
    main = is_main_process()  # under torchrun, rank 0 reports; the others would only repeat it
    if main:
        _show_library_progress()
    try:
        path = config or (run_config_path(resume) if resume else None)
        base = TrainConfig.from_json(path) if path else TrainConfig()
    except ValueError as exc:
        fail(str(exc), EXIT_FAILURE)
    if data is not None and dataset != "qm9":
        fail("give --data FILE or --dataset, not both", EXIT_USAGE)
    if (val or test or split or split_fractions) and data is None and not (config or resume):
        fail("--split, --split-fractions, --val and --test go with --data FILE", EXIT_USAGE)
    if data is not None and not target:
        fail("--data needs at least one --target NAME[:UNIT] naming a field of the file", EXIT_USAGE)
    if fragments is not None:
        fragments_option(fragments)
    # Paths are stored absolute, so that --resume works from any working directory.
    dataset_value = str(data.resolve()) if data is not None else dataset
    own = data is not None and not (config or resume)  # a new run on the user's own data: its own defaults
    overrides: dict[str, Any] = {k: v for k, v in {
        "task": ("nbody" if dataset == "nbody" else task) if (task != "properties" or dataset == "nbody"
                                                             or not (config or resume)) else None,
        "model": model or (None if (config or resume) else ("clofnet" if task == "conformers" else "egnn")),
        "dataset": dataset_value if (dataset_value != "qm9" or not (config or resume)) else None,
        "targets": list(target) if target else None, "epochs": epochs,
        "max_time": _parse_duration(max_time) if max_time else None,
        "batch_size": batch_size or (OWN_DATA_BATCH if own else None), "lr": lr,
        "seed": seed, "limit": limit, "graph": graph or ("auto" if own else None), "cutoff": cutoff,
        "save_every": save_every,
        "device": device, "out": str(resume or out) if (resume or out != Path("runs/run") or not config) else None,
        "init_from": init_from, "split": split,
        "split_fractions": _parse_fractions(split_fractions) if split_fractions else None,
        "split_seed": split_seed, "val_data": str(val.resolve()) if val else None,
        "test_data": str(test.resolve()) if test else None,
        "smiles_column": smiles_column, "id_column": id_column, "embed_seed": embed_seed,
        "forces": forces, "forces_weight": forces_weight, "max_atoms": max_atoms, "embed_timeout": embed_timeout,
        "fragments": fragments, "outlier_mad": outlier_mad,
        "fingerprint": fingerprint or ("auto" if own else None),
    }.items() if v is not None}
    if init_from and not resume:
        try:
            overrides["model_config"] = recorded_model_config(init_from)
            recorded = recorded_graph(init_from)
        except ValueError as exc:
            fail(f"--init-from {init_from}: {exc}", EXIT_FAILURE)
        if recorded is not None and graph is None:  # the graph its weights were trained on
            overrides["graph"] = recorded["kind"]
            overrides.setdefault("cutoff", recorded.get("cutoff", 5.0))
    if own and not init_from and overrides["model"] == "egnn":
        overrides["model_config"] = dict(OWN_DATA_EGNN)
    if set_:
        overrides["model_config"] = {**overrides.get("model_config", base.model_config), **_parse_model_options(set_)}
    try:
        cfg = TrainConfig.from_dict({**base.to_dict(), **overrides})
    except (ValueError, TypeError) as exc:
        fail(str(exc), EXIT_USAGE)
    if ensemble > 1 or (resume and is_ensemble(resume)):
        if nproc > 1:
            fail("--ensemble trains its members one after another; leave out --nproc", EXIT_USAGE)
        _train_ensemble(cfg, ensemble, resume)
        return

    trainer, result = _run_one(cfg, resume, main)

    if not main:
        return
    if result.metric != "mae":
        err.print(f"best epoch {result.best_epoch}: validation {result.val}, test {result.test}")
        err.print(f"run directory: {result.out}")
        print(json.dumps({"out": str(result.out), "best_epoch": result.best_epoch, "val": result.val,
                          "test": result.test}))
        return
    _report(trainer, result)
    # stdout gets one machine-readable line, so scripts can pick up the result.
    print(json.dumps({"out": str(result.out), "best_epoch": result.best_epoch, "test_mae": result.test_mae}))


def _run_one(cfg, resume: Path | None, main: bool = True):
    """Train (or resume) one run; returns the trainer and its result. Bad data or settings end with exit 1."""
    from se3mol.tasks.run import train_run

    progress = _ProgressView(cfg.epochs, enabled=main)

    def ready(trainer) -> None:
        if not main:
            return
        if summary := trainer.task.summary():
            err.print(summary, highlight=False, markup=False, soft_wrap=True)
        if trainer.task.init_note:
            err.print(f"init: {trainer.task.init_note}", highlight=False, markup=False)
        if resume:
            err.print(f"resumed {resume} at epoch {trainer.epoch}, step {trainer.global_step}")

    try:
        with progress:
            return train_run(cfg, resume, progress=progress, on_ready=ready)
    except (ValueError, ImportError) as exc:
        fail(str(exc), EXIT_FAILURE)
    except OSError as exc:  # a full disk or a read-only run directory: say so, as predict does (exit 5)
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"cannot write the run directory{where}: {exc.strerror or exc}; the last complete checkpoint in "
             f"{cfg.out} is intact (resume with --resume {cfg.out})", EXIT_OUTPUT)


#: Molecules per step of a new run on the user's own data (QM9's default is 96): a few hundred molecules make a few
#: steps an epoch at 96. With the radius graph it gave test RMSE 0.896 / 1.020 against 0.951 / 1.068 for the old
#: defaults (full graph, 96) on two MoleculeACE development sets (docs/notes/own-data.md).
OWN_DATA_BATCH = 32

#: EGNN settings of a new run on the user's own data (QM9's default is 128 wide): on three MoleculeACE development sets
#: a 64-wide model with the smooth radius cutoff reached test RMSE 0.618 / 0.879 / 0.803 against 0.619 / 0.912 /
#: 0.838 at 128, in about half the CPU time (docs/notes/own-data.md).
OWN_DATA_EGNN = {"hidden": 64}


def _show_library_progress() -> None:
    """Print se3mol's INFO log messages (e.g. progress while featurising a data file) on stderr, once."""
    import logging

    class ToStderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            err.print(record.getMessage(), highlight=False, markup=False, soft_wrap=True)

    logger = logging.getLogger("se3mol")
    if not any(type(h).__name__ == "ToStderr" for h in logger.handlers):
        logger.addHandler(ToStderr())
        logger.setLevel(logging.INFO)


def _report(trainer, result) -> None:
    """The test metrics of a finished property run, as a table on stderr."""
    metrics = json.loads((Path(result.out) / "results.json").read_text()).get("test_metrics", {})
    table = Table(title=f"Test metrics of best checkpoint (epoch {result.best_epoch}) on {len(trainer.split['test'])}"
                        " test molecules")
    columns: list[tuple[str, Justify]] = [("target", "left"), ("test MAE", "right"), ("test RMSE", "right"),
                                          ("test R^2", "right"), ("n", "right"), ("val MAE", "right")]
    for c, justify in columns:
        table.add_column(c, justify=justify)
    for t in trainer.task.targets:
        m = metrics.get(t.name, {})
        table.add_row(f"{t.name} ({t.unit})" if t.unit else t.name, f"{result.test_mae[t.name]:.4g}",
                      f"{m.get('rmse', float('nan')):.4g}", f"{m.get('r2', float('nan')):.3f}", str(m.get("n", "")),
                      f"{result.val_mae[t.name]:.4g}")
    if "forces" in result.test_mae:
        table.add_row(f"forces ({trainer.task.targets[0].unit}/A)", f"{result.test_mae['forces']:.4g}", "", "", "",
                      f"{result.val_mae['forces']:.4g}")
    err.print(table)
    err.print(f"run directory: {result.out}")


def _train_ensemble(cfg, n: int, resume: Path | None) -> None:
    """Members ``OUT/member-K`` with seeds ``seed + K`` on one split; resumes unfinished members."""
    from se3mol.tasks.run import train_ensemble

    ens = train_ensemble(cfg, n, resume is not None, run=_run_one, log=err.print)
    table = Table(title=f"Ensemble of {len(ens.members)}: test MAE of each member and of their mean")
    table.add_column("target")
    for k in range(len(ens.members)):
        table.add_column(f"member {k}", justify="right")
    if ens.ensemble_test is not None:
        table.add_column("ensemble (mean)", justify="right")
    for t, values in ens.test.items():
        mean = [f"{ens.ensemble_test[t]['mae']:.4g}"] if ens.ensemble_test and t in ens.ensemble_test else []
        table.add_row(t, *(f"{v:.4g}" for v in values), *mean)
    err.print(table)
    err.print(f"run directory: {ens.out} (predict with --model {ens.out} for the mean and _std)")
    mean_mae = {t: m["mae"] for t, m in (ens.ensemble_test or {}).items()}
    print(json.dumps({"out": str(ens.out), "members": len(ens.members), "test_mae": ens.test,
                      "ensemble_test_mae": mean_mae}))


def _parse_fractions(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.replace(" ", ",").split(",") if x]
    except ValueError:
        values = []
    if len(values) != 3:
        fail(f"--split-fractions {text!r}: give three numbers for train, val and test, e.g. 0.8,0.1,0.1", EXIT_USAGE)
    return values


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
        self.enabled = enabled
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
            TextColumn("step {task.completed}/{task.total}"), TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[val]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, disable=not self.live)
        self.task: TaskID | None = None
        self.last_val = "val MAE -"
        self.mark: tuple[float, int] | None = None  # (time, step) the logged rate counts from
        self.start: float | None = None  # when the first step ended: the up-front estimate counts from it
        self.estimated = False

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    #: Steps after the first whose pace gives the up-front estimate (the first step pays one-off costs).
    ESTIMATE_STEPS = 10

    def _estimate(self, info: dict[str, Any], now: float) -> None:
        """Once, early in the first epoch: how long an epoch and the whole run will take at this pace."""
        if self.estimated or not self.enabled:
            return
        if self.start is None:
            self.start = now
            return
        done = info["step"] - 1
        if done < min(self.ESTIMATE_STEPS, info["steps"] - 1):
            return
        self.estimated = True
        per_epoch = (now - self.start) / max(done, 1) * info["steps"]
        err.print(f"pace: about {_duration(per_epoch)} per epoch of {info['steps']} steps (validation not "
                  f"included), {_duration(per_epoch * self.epochs)} for {self.epochs} epochs, unless --max-time "
                  "or early stopping ends it sooner", highlight=False)

    def __call__(self, info: dict[str, Any]) -> None:
        if info["event"] == "step":
            if self.task is None:
                self.task = self.bar.add_task("train", total=info["steps"], epoch=info["epoch"], epochs=self.epochs,
                                              loss=info["loss"], val=self.last_val)
            self.bar.update(self.task, completed=info["step"], epoch=info["epoch"], loss=info["loss"],
                            val=self.last_val)
            now = time.perf_counter()
            self._estimate(info, now)
            if self.mark is None or info["step"] < self.mark[1]:  # first step, or a new epoch
                self.mark = (now, info["step"])
            if not self.live and info["step"] % 100 == 0:
                t0, step0 = self.mark
                rate = (info["step"] - step0) / (now - t0) if now > t0 else float("nan")
                self.mark = (now, info["step"])
                err.print(f"epoch {info['epoch']}/{self.epochs} step {info['step']}/{info['steps']} "
                          f"loss {info['loss']:.4f} ({rate:.2f} steps/s)", highlight=False)
        else:
            label = "val MAE " if info["metric"] == "mae" else "val "
            self.last_val = label + ", ".join(f"{k} {v:.4g}" for k, v in info["val"].items())
            if self.task is not None:
                self.bar.update(self.task, completed=0, val=self.last_val)
            if not self.live:
                err.print(f"epoch {info['epoch']}/{self.epochs} step {info['step']} "
                          f"loss {info['train_loss']:.4f} {self.last_val} lr {info['lr']:.2e} "
                          f"time {info['time_s']:.0f}s", highlight=False)


def _duration(seconds: float) -> str:
    """``42 s``, ``7.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
