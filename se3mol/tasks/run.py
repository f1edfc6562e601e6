"""Training runs as the command line starts them: one run (new or resumed), or an ensemble of runs.

``se3mol train`` parses its options into a :class:`~se3mol.training.TrainConfig` and calls one of these;
Python users can too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from se3mol.tasks import make_task, task_class
from se3mol.training.config import TrainConfig
from se3mol.training.loop import RunResult, Trainer
from se3mol.writers import atomic_write_text

Progress = Callable[[dict[str, Any]], None]


def run_config_path(run: Path) -> Path:
    """The ``config.json`` that stands for run directory ``run`` (an ensemble's: its first member's)."""
    return run / "member-0" / "config.json" if is_ensemble(run) else run / "config.json"


def is_ensemble(run: Path) -> bool:
    """Whether ``run`` is an ensemble's directory (``member-K`` run directories)."""
    return (Path(run) / "member-0").is_dir()


def train_run(config: TrainConfig, resume: Path | None = None, data: Any = None, progress: Progress | None = None,
              on_ready: Callable[[Trainer], None] | None = None) -> tuple[Trainer, RunResult]:
    """Train the run ``config`` describes, or continue run directory ``resume`` from its ``last.pt``;
    returns the trainer and its result. ``on_ready(trainer)`` is called once the data is loaded and the
    model built (resumed), before the first step. Bad data or settings raise ``ValueError``."""
    trainer = Trainer(make_task(config, data), progress=progress)
    if resume is not None:
        trainer.resume(Path(resume) / "last.pt")
    if on_ready is not None:
        on_ready(trainer)
    return trainer, trainer.train()


@dataclass
class EnsembleResult:
    """An ensemble's run directory, its members' directories, and each member's test metrics."""

    out: Path
    members: list[Path]
    test: dict[str, list[float]]
    units: dict[str, str]
    ensemble_test: dict[str, dict[str, float]] | None = None  # the members' mean: MAE, RMSE, R^2, n per target


def train_ensemble(config: TrainConfig, n: int, resume: bool = False,
                   run: Callable[[TrainConfig, Path | None], Any] | None = None,
                   log: Callable[[str], None] = print) -> EnsembleResult:
    """Train ``n`` members ``OUT/member-K`` with seeds ``seed + K`` on one split (``OUT`` is
    ``config.out``); with ``resume``, finished members are kept, unfinished ones resumed from their
    ``last.pt`` and missing ones started. ``run(config, resume_dir)`` trains one member (default:
    :func:`train_run`). Writes ``OUT/ensemble.json``."""
    run = run or (lambda cfg, again: train_run(cfg, again))
    root = Path(config.out)
    if resume:
        n = max(n, len(list(root.glob("member-*"))))
    results = []
    for k in range(n):
        member = root / f"member-{k}"
        mcfg = replace(config, seed=config.seed + k, out=str(member))
        if (member / "results.json").is_file():
            log(f"member {k + 1} of {n}: finished already ({member})")
        else:
            log(f"member {k + 1} of {n}: seed {mcfg.seed}, {member}")
            again = resume and (member / "last.pt").is_file()
            if again:
                mcfg = TrainConfig.from_json(member / "config.json")
            run(mcfg, member if again else None)
        results.append(json.loads((member / "results.json").read_text()))
    key = task_class(config.task).test_key  # test_mae for properties
    test = {t: [r[key][t] for r in results] for t in results[0][key]}
    members = [root / f"member-{k}" for k in range(n)]
    mean = ensemble_test_metrics(config, members) if config.task == "properties" else None
    summary = {"members": [m.name for m in members], key: test, "units": results[0].get("units", {}),
               **({"ensemble_test_metrics": mean} if mean is not None else {})}
    atomic_write_text(json.dumps(summary, indent=2) + "\n", root / "ensemble.json")
    return EnsembleResult(root, members, test, summary["units"], mean)


def ensemble_test_metrics(config: TrainConfig, members: list[Path]) -> dict[str, dict[str, float]]:
    """MAE, RMSE, R^2 and n per target of the mean of ``members``' ``best.pt`` on the test split of ``config``
    (the one every member trained on): what ``se3mol predict --model RUN`` gives, measured."""
    import torch

    from se3mol.checkpoint import load_model
    from se3mol.training.metrics import evaluate, regression_metrics

    task = make_task(config)
    idx = task.split["test"]
    outs = []
    for member in members:
        model, _ = load_model(member / "best.pt")
        outs.append(evaluate(model, task.data, idx, model.graph, torch.device("cpu"), return_values=True))
    pred = torch.stack([o[1] for o in outs]).mean(0)  # [M,D]
    return regression_metrics(pred, outs[0][2], list(model.targets))
