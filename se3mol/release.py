"""Turn a finished (or stopped) run into a shipped model: ``models/NAME.pt`` + model card ``NAME.json``.

The card states what was measured, on what split, with what command, in how long, on what hardware.
If the run's best checkpoint has no test metrics yet (the run was stopped early), they are measured
here on the full test split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from se3mol.checkpoint import atomic_save, load_model, read_checkpoint
from se3mol.data.qm9 import SPLIT_SIZES, load_qm9
from se3mol.graph import GraphConfig
from se3mol.runtime import describe_hardware
from se3mol.training.metrics import evaluate
from se3mol.writers import atomic_write_text


def _hardware(metrics: dict[str, Any]) -> str:
    """Where the run trained, as its trainer recorded it; for a run from before that was recorded, this
    machine, said to be the releasing one."""
    if metrics.get("hardware"):
        return str(metrics["hardware"])
    return f"{describe_hardware()} (the releasing machine: the run did not record where it trained)"


def release(run_dir: str | Path, name: str, command: str, models_dir: str | Path = "models",
            benchmarks: dict[str, Path] | None = None) -> dict[str, Any]:
    """Write ``models_dir/name.pt`` and ``name.json`` from ``run_dir/best.pt``; return the card. ``benchmarks``:
    the result files a conformer model's card summarises (default ``conformer_benchmarks()``)."""
    run_dir, models_dir = Path(run_dir), Path(models_dir)
    from se3mol.tasks.run import is_ensemble

    if is_ensemble(run_dir):
        return release_ensemble(run_dir, name, command, models_dir)
    if "kind" in read_checkpoint(run_dir / "best.pt")["model"]:
        return release_conformers(run_dir, name, command, models_dir, benchmarks)
    model, ckpt = load_model(run_dir / "best.pt")
    metrics = ckpt.get("metrics", {})
    data = load_qm9()
    split = ckpt["split"]
    targets = ckpt["target_names"]
    if "test_mae" not in metrics:
        graph = GraphConfig(**ckpt["model"]["graph"])
        test = split["test"].long()
        metrics["test_mae"] = evaluate(model, data, test, graph, torch.device("cpu"))
        metrics["test_n"] = int(len(test))
    if "domain" not in ckpt:
        ckpt["domain"] = data.domain(split["train"].long(), model.elements)
    history = _history(run_dir)
    wall = metrics.get("wall_time_s") or (history[-1]["time_s"] if history else None)
    ckpt["metrics"] = metrics
    atomic_save(ckpt, models_dir / f"{name}.pt")
    cfg = ckpt["train_config"]
    card = {
        "name": name,
        "model": ckpt["model"]["name"],
        "model_config": ckpt["model"]["config"],
        "graph": ckpt["model"]["graph"],
        "targets": targets,
        "units": ckpt["units"],
        "test_mae": metrics["test_mae"],
        "test_n": metrics["test_n"],
        "val_mae": metrics.get("val_mae"),
        "best_epoch": metrics.get("epoch"),
        "epochs": len(history) or metrics.get("epochs_run"),
        "epochs_planned": cfg["epochs"],
        "max_time_s": cfg.get("max_time"),  # a time-budgeted run: epochs_planned is only an upper bound
        "wall_time_s": wall,
        "dataset": "QM9 (qm9pack 1.0.3, 130,831 molecules)",
        "split": f"standard fixed split {SPLIT_SIZES['train']}/{SPLIT_SIZES['val']}/{SPLIT_SIZES['test']}, "
                 f"numpy default_rng({split['seed']}).permutation; test MAE measured on the test split",
        "training_limit": cfg.get("limit"),
        "domain": ckpt["domain"],
        "hardware": _hardware(metrics),
        "command": command,
        "history": history,
        "se3mol_version": ckpt["se3mol_version"],
    }
    atomic_write_text(json.dumps(card, indent=2) + "\n", models_dir / f"{name}.json")
    return card


def release_ensemble(run_dir: Path, name: str, command: str, models_dir: Path) -> dict[str, Any]:
    """Ship the ensemble in ``run_dir`` (``se3mol train --ensemble N``: ``member-K/best.pt``) as ``NAME.pt``
    (member 0) and ``NAME.member-K.pt``, with one card: the test MAE of the members' mean, each member's,
    and the calibration of their spread.

    The ``_std`` columns are the members' spread times ``std_scale`` (per target), fitted on the validation
    split so that 68.27 % of its errors lie within one std (:func:`fit_std_scale`); the card's ``calibration``
    then says, on the test split, which fraction of errors lies within 1 and 2 std, raw and calibrated.
    Members fine-tuned from one run (``init_from``) record it as their ``base``, with its epochs and time."""
    from se3mol.training.metrics import calibration, fit_std_scale, regression_metrics

    paths = sorted(run_dir.glob("member-*/best.pt"), key=lambda q: int(q.parent.name.split("-")[1]))
    loaded = [load_model(p) for p in paths]
    ckpts = [c for _, c in loaded]
    split = ckpts[0]["split"]
    for p, c in zip(paths, ckpts, strict=True):
        if c["target_names"] != ckpts[0]["target_names"] or any(
                not torch.equal(torch.as_tensor(c["split"][k]), torch.as_tensor(split[k])) for k in ("val", "test")):
            raise ValueError(f"{p}: its targets or split differ from member-0's; an ensemble shares both")
    model0 = loaded[0][0]
    targets = list(model0.targets)
    data = load_qm9()
    graph = GraphConfig(**ckpts[0]["model"]["graph"])
    measured: dict[str, dict[str, torch.Tensor]] = {}
    for part in ("val", "test"):
        idx = split[part].long()
        outs = [evaluate(m, data, idx, graph, torch.device("cpu"), return_values=True) for m, _ in loaded]
        every = torch.stack([o[1] for o in outs])  # [K,M,D]
        measured[part] = {"pred": every.mean(0), "std": every.std(0, unbiased=True), "ref": outs[0][2]}
    val, test = measured["val"], measured["test"]
    scale = fit_std_scale(val["pred"], val["std"], val["ref"], targets)
    test_metrics = regression_metrics(test["pred"], test["ref"], targets)
    val_metrics = regression_metrics(val["pred"], val["ref"], targets)
    members = [f"{name}.pt"] + [f"{name}.member-{k}.pt" for k in range(1, len(paths))]
    for stale in models_dir.glob(f"{name}.member-*.pt"):
        if stale.name not in members:
            stale.unlink()
    for file, ckpt in zip(members, ckpts, strict=True):
        ckpt.setdefault("domain", data.domain(split["train"].long(), model0.elements))
        atomic_save(ckpt, models_dir / file)
    histories = [_history(p.parent) for p in paths]
    walls = [c["metrics"].get("wall_time_s") or (h[-1]["time_s"] if h else 0.0) for c, h in zip(ckpts, histories,
                                                                                               strict=True)]
    cfg = ckpts[0]["train_config"]
    base = _base_run(cfg.get("init_from"))
    card = {
        "name": name,
        "model": ckpts[0]["model"]["name"],
        "model_config": ckpts[0]["model"]["config"],
        "graph": ckpts[0]["model"]["graph"],
        "targets": ckpts[0]["target_names"],
        "units": ckpts[0]["units"],
        "ensemble_size": len(paths),
        "members": members,
        "test_mae": {k: v["mae"] for k, v in test_metrics.items()},
        "test_metrics": test_metrics,
        "test_n": int(len(split["test"])),
        "val_mae": {k: v["mae"] for k, v in val_metrics.items()},
        "member_test_mae": [c["metrics"].get("test_mae") for c in ckpts],
        "std_scale": scale,
        "calibration": {
            "method": "std_scale[t] = the 68.27% quantile of |error| / spread on the validation split "
                      f"({len(split['val']):,} molecules); checked on the test split. Normal errors: within_1std "
                      "0.683, within_2std 0.954.",
            "test_raw": calibration(test["pred"], test["std"], test["ref"], targets),
            "test_calibrated": calibration(test["pred"], test["std"], test["ref"], targets, scale),
        },
        "best_epoch": [c["metrics"].get("epoch") for c in ckpts],
        "epochs": max(len(h) for h in histories) or cfg["epochs"],
        "epochs_planned": cfg["epochs"],
        "wall_time_s": round(sum(walls) + (base or {}).get("wall_time_s", 0.0), 1),
        "member_wall_time_s": walls,
        **({"base": base} if base else {}),
        "dataset": "QM9 (qm9pack 1.0.3, 130,831 molecules)",
        "split": f"standard fixed split {SPLIT_SIZES['train']}/{SPLIT_SIZES['val']}/{SPLIT_SIZES['test']}, "
                 f"numpy default_rng({split['seed']}).permutation; test MAE measured on the test split",
        "training_limit": cfg.get("limit"),
        "domain": ckpts[0]["domain"],
        "hardware": _hardware(ckpts[0].get("metrics", {})),
        "command": command,
        "history": histories,
        "se3mol_version": ckpts[0]["se3mol_version"],
    }
    atomic_write_text(json.dumps(card, indent=2) + "\n", models_dir / f"{name}.json")
    return card


def _base_run(init_from: str | None) -> dict[str, Any] | None:
    """What a fine-tuned run started from: the checkpoint, its epoch, and (a run directory's) history up to
    that epoch and the training time it took; ``None`` for a run from random weights."""
    if not init_from:
        return None
    path = Path(init_from)
    if not path.is_file():
        return {"source": init_from}
    ckpt = read_checkpoint(path)
    epoch = ckpt.get("metrics", {}).get("epoch")
    history = [h for h in _history(path.parent) if epoch is None or h["epoch"] <= epoch]
    return {"source": init_from, "epoch": epoch, "epochs_planned": ckpt["train_config"].get("epochs"),
            "wall_time_s": history[-1]["time_s"] if history else None, "val_mae": ckpt["metrics"].get("val_mae"),
            "history": history}


def _history(run_dir: Path) -> list[dict[str, Any]]:
    if not (run_dir / "last.pt").exists():
        return []
    last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    return last.get("training_state", {}).get("history", [])


#: The results of ``benchmarks/conformers/conformers.py`` that a conformer model's card summarises, by card key.
CONFORMER_BENCHMARKS = {"benchmark": "conformers.json",
                        "benchmark_reference_stereo": "conformers_reference_stereo.json"}
_SOURCE_TREE = Path(__file__).resolve().parents[1]


def conformer_benchmarks(results_dir: str | Path | None = None) -> dict[str, Path]:
    """The result files of ``CONFORMER_BENCHMARKS`` in ``results_dir``; by default in the
    ``benchmarks/conformers/results`` of the source tree this module was loaded from (an editable install; in
    an installed package the files are not there, and the cards get no benchmark sections)."""
    base = Path(results_dir) if results_dir is not None else _SOURCE_TREE / "benchmarks" / "conformers" / "results"
    return {key: base / name for key, name in CONFORMER_BENCHMARKS.items()}


def _source(path: Path) -> str:
    """``path`` relative to the source tree where it lies in it, so that a card names no machine's directories."""
    try:
        return path.resolve().relative_to(_SOURCE_TREE).as_posix()
    except ValueError:
        return str(path)


def release_conformers(run_dir: Path, name: str, command: str, models_dir: Path,
                       benchmarks: dict[str, Path] | None = None) -> dict[str, Any]:
    """Ship a conformer score model; its card carries the DSM losses and, once measured, the COV/MAT
    figures of ``benchmarks/conformers/conformers.py`` (QM9's SMILES, and with the reference's stereo).

    A fine-tuned run (``init_from``) records the card of the model it started from, read before the
    new one may replace it, so that the card accounts for all of the training."""
    from se3mol.pretrained import load_score_model

    model, ckpt = load_score_model(run_dir / "best.pt")
    base = ckpt["train_config"].get("init_from")
    base_card = None
    if base:
        base_path = models_dir / f"{base}.json"
        if base_path.is_file():
            old = json.loads(base_path.read_text())
            if old.get("command") == command and "base" in old:  # this run was shipped before: keep its base
                base_card = old["base"]
            else:
                base_card = {k: old.get(k) for k in ("name", "command", "epochs", "wall_time_s", "val_dsm_loss",
                                                     "test_dsm_loss", "base")}
        else:
            base_card = {"name": base}
    metrics = ckpt.get("metrics", {})
    if not metrics.get("test") and ckpt.get("data", {}).get("dataset") == "qm9":
        # a stopped run: measure the test DSM loss here, as the trainer's finish() would have
        from se3mol.conformers.data import conformer_dataset
        from se3mol.tasks.conformer_score import VAL_MOLECULES, dsm_loss_on

        data, split, _ = conformer_dataset("qm9")
        test = split["test"][:VAL_MOLECULES]
        metrics["test"] = {"dsm_loss": dsm_loss_on(model, data, test)}
        metrics["test_n"] = int(len(test))
        ckpt["metrics"] = metrics
    history = _history(run_dir)
    atomic_save(ckpt, models_dir / f"{name}.pt")
    cfg = ckpt["train_config"]
    card = {
        "name": name,
        "task": "conformers",
        "model": ckpt["model"]["name"],
        "model_config": ckpt["model"]["config"],
        "graph": ckpt["model"]["graph"],
        "noise": ckpt.get("noise"),
        "targets": ["conformers"],
        "units": {},
        # "val_mae" in checkpoints written before metrics were named for what they are
        "val_dsm_loss": (metrics.get("val") or metrics.get("val_mae", {})).get("dsm_loss"),
        "test_dsm_loss": metrics.get("test", {}).get("dsm_loss"),
        "test_n": metrics.get("test_n"),
        "best_epoch": metrics.get("epoch"),
        "epochs": len(history) or metrics.get("epochs_run"),
        "epochs_planned": cfg["epochs"],
        "wall_time_s": metrics.get("wall_time_s") or (history[-1]["time_s"] if history else None),
        "data": ckpt.get("data"),
        "domain": ckpt.get("domain"),
        "hardware": _hardware(metrics),
        "command": command,
        **({"base": base_card} if base_card else {}),
        "history": history,
        "se3mol_version": ckpt["se3mol_version"],
    }
    card.update(benchmark_sections(benchmarks))
    atomic_write_text(json.dumps(card, indent=2) + "\n", models_dir / f"{name}.json")
    return card


def benchmark_sections(benchmarks: dict[str, Path] | None = None) -> dict[str, Any]:
    """The card sections (``benchmark``, ``benchmark_reference_stereo``) summarising the committed results of
    ``benchmarks/conformers/conformers.py``: every row's figures and settings, without the per-molecule lists."""
    sections = {}
    for key, path in (benchmarks if benchmarks is not None else conformer_benchmarks()).items():
        if not path.is_file():
            continue
        bench = json.loads(path.read_text())
        # benchmarks/conformers/conformers.py writes "results"; benchmarks/conformers/drugs.py "summary"
        rows = bench["results"] if "results" in bench else bench["summary"]
        summary = [{k: v for k, v in row.items() if not (k in ("molecules", "failures") and isinstance(v, list))}
                   for row in rows]  # without the per-molecule lists (a count stays)
        kept = ("command", "date", "machine", "n_molecules", "k", "threshold", "split", "stereo", "reference",
                "model", "start_sigma", "seed")
        sections[key] = {"source": _source(path), **{k: bench[k] for k in kept if k in bench}, "results": summary}
    return sections


def refresh_benchmarks(name: str, models_dir: str | Path = "models",
                       benchmarks: dict[str, Path] | None = None) -> dict[str, Any]:
    """Replace the benchmark sections of shipped conformer model ``name``'s card with the committed results
    (after the sampler or its defaults change); the weights and the rest of the card are left as they are."""
    path = Path(models_dir) / f"{name}.json"
    card = json.loads(path.read_text())
    if card.get("task") != "conformers":
        raise ValueError(f"{path} is not the card of a conformer score model")
    card.update(benchmark_sections(benchmarks))
    atomic_write_text(json.dumps(card, indent=2) + "\n", path)
    return card


def main(argv: list[str] | None = None) -> None:
    """``python -m se3mol.release RUN_DIR NAME --command "se3mol train ..."``, or
    ``python -m se3mol.release --refresh-benchmarks NAME`` for a conformer model's card alone."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("name")
    ap.add_argument("--command", help="the exact command that trained the run")
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--benchmark-results", type=Path, default=None, metavar="DIR",
                    help="where the results of benchmarks/conformers/conformers.py lie (default: "
                         "benchmarks/conformers/results of this source tree)")
    ap.add_argument("--benchmark", action="append", default=[], metavar="KEY=FILE",
                    help="a conformer model's card summarises these result files (JSON of benchmarks/conformers/"
                         "conformers.py or drugs.py) under KEY, instead of the QM9 benchmark's; repeatable")
    ap.add_argument("--refresh-benchmarks", action="store_true",
                    help="only replace the benchmark sections of conformer model NAME's card (no RUN_DIR)")
    a = ap.parse_args(argv)
    benchmarks = conformer_benchmarks(a.benchmark_results)
    if a.benchmark:
        if any("=" not in b for b in a.benchmark):
            ap.error("--benchmark takes KEY=FILE")
        benchmarks = {k: Path(f) for k, _, f in (b.partition("=") for b in a.benchmark)}
        missing = [str(f) for f in benchmarks.values() if not f.is_file()]
        if missing:
            ap.error(f"no such benchmark result: {', '.join(missing)}")
    if a.refresh_benchmarks:
        if a.run_dir is not None:
            ap.error("--refresh-benchmarks takes NAME only")
        refresh_benchmarks(a.name, a.models_dir, benchmarks)
        print(f"refreshed the benchmark sections of {a.models_dir}/{a.name}.json")
        return
    if a.run_dir is None or a.command is None:
        ap.error("RUN_DIR NAME and --command are required to release a run")
    card = release(a.run_dir, a.name, a.command, a.models_dir, benchmarks)
    keys = ("name", "test_mae", "test_dsm_loss", "test_n", "epochs", "wall_time_s")
    print(json.dumps({k: card[k] for k in keys if k in card}, indent=2))


if __name__ == "__main__":
    main()
