"""se3mol against chemprop v2 on a QM9-derived regression task: same molecules, same split, same CPU budget.

    python -m benchmarks.accuracy.own_data_vs_chemprop                          # Cv, 5,000 train, 10 minutes each
    python -m benchmarks.accuracy.own_data_vs_chemprop --tools chemprop         # the chemprop half alone
    python -m benchmarks.accuracy.own_data_vs_chemprop --tools se3mol --target gap --budget 30

The task is cut from QM9 as shipped by se3mol (no download): the first ``--n-train`` (5,000) molecules of
the standard split's training indices, the first ``--n-val`` (500) of its validation and the first
``--n-test`` (1,000) of its test indices, target ``--target`` (default ``Cv``, cal/(mol K); any of the 12
QM9 targets, in se3mol's user units). It is written into ``--work`` (default ``runs/bench_own_data/``)
as a user would hand it to each tool:

- ``qm9_<target>.csv``: ``smiles,<target>,split`` (QM9's SMILES), chemprop's input, with
  ``qm9_<target>_splits.json`` (its ``--splits-file``: the row indices of train, val and test) and
  ``qm9_<target>_test_smiles.csv`` (``smiles,name`` of the test rows, for ``chemprop predict``);
- ``qm9_<target>.sdf``: the DFT geometries (bonds perceived with RDKit ``DetermineBonds``, neutral; those of
  QM9's SMILES where the geometry gives no consistent bond orders), titled ``dsgdb9nsd_NNNNNN``, with SD
  fields ``<target>`` and ``split``, se3mol's input; also
  ``qm9_<target>_test.sdf`` (the test records alone). The SDF is checked to read back through
  ``se3mol.io.read_records`` (every record read, same atoms and coordinates, target and split intact).

chemprop (its own virtualenv, ``benchmarks/peers/chemprop_env.sh``; never a se3mol dependency) trains with its
defaults (D-MPNN, regression, MSE loss, best-validation-loss checkpoint), reporting MAE and RMSE. It has no
time limit, so the budget is turned into epochs: a probe run of ``--probe-epochs`` epochs (3, the fewest
its 2 warm-up epochs allow) measures the start-up time and the seconds per epoch (training + validation,
timed from the per-epoch checkpoint writes), and the real run gets ``floor((budget - start-up) /
per-epoch)`` epochs, so its learning-rate schedule (warm-up, then exponential decay over all epochs) is
fitted to the budget as se3mol's is by ``--max-time``. Then ``chemprop predict`` scores the test SMILES
with ``best.pt``, and the test MAE is computed here from those predictions.

se3mol trains on the SDF with ``se3mol train --data --split column:split --max-time <budget>m`` (``--epochs
1000``, an upper bound only, so the budget ends the run) and the model options of this script (``--model
egnn --set hidden=128 --set layers=4 --batch-size 32`` by default); its test MAE is read from the run
directory's ``results.json`` (``read_se3mol_test_mae``), and ``se3mol evaluate`` re-scores ``best.pt`` on the
test SDF as a cross-check.

Both run with ``--threads`` (default 1) threads: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and chemprop's
``--num-workers 0``. Wall times are of the whole training process (start-up, featurisation, every epoch,
the final test pass). Run it alone on the machine; the load average before and after each run is kept.
Writes ``benchmarks/accuracy/results/own_data_vs_chemprop.{json,md}`` (``--out`` stem); a tool that is not run
keeps its earlier entry for the same task. ``--report-only`` rewrites the .md from the .json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._results import ROOT, invocation, results_dir, write_result

RESULTS = results_dir(__file__)
CHEMPROP_ENV = Path(os.environ.get("CHEMPROP_ENV", "/work/bench-chemprop"))
# se3mol's CLI: that of the environment running this script, else the one on PATH.
SE3MOL = Path(sys.executable).with_name("se3mol")
if not SE3MOL.exists() and shutil.which("se3mol"):
    SE3MOL = Path(shutil.which("se3mol"))
TOOLS = ("chemprop", "se3mol")
CHEMPROP_WARMUP_EPOCHS = 2  # chemprop's default --warmup-epochs; it requires --epochs > warm-up


# ----------------------------------------------------------------------------------------------- data

def build_task(target: str, n_train: int, n_val: int, n_test: int, work: Path) -> dict:
    """Write the CSV, SDF and split files of the task into ``work``; return their paths and the labels."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds

    from se3mol.data.qm9 import TARGET_NAMES, load_qm9, standard_split
    from se3mol.writers import SDFWriter

    RDLogger.DisableLog("rdApp.*")
    if target not in TARGET_NAMES:
        raise SystemExit(f"unknown QM9 target {target!r}; choose from {', '.join(TARGET_NAMES)}")
    col = TARGET_NAMES.index(target)
    qm9 = load_qm9(verbose=False)
    split = standard_split()
    picked = [("train", split["train"][:n_train]), ("val", split["val"][:n_val]), ("test", split["test"][:n_test])]
    rows = [(int(k), name) for name, idx in picked for k in idx]  # (QM9 position, split), CSV/SDF row order

    work.mkdir(parents=True, exist_ok=True)
    stem = work / f"qm9_{target}"
    paths = {"csv": stem.with_suffix(".csv"), "sdf": stem.with_suffix(".sdf"),
             "test_sdf": work / f"qm9_{target}_test.sdf", "splits_json": work / f"qm9_{target}_splits.json",
             "test_smiles_csv": work / f"qm9_{target}_test_smiles.csv"}
    labels = {"name": [], "split": [], "y": [], "smiles": [], "n_atoms": []}
    from_smiles: list[str] = []
    with open(paths["csv"], "w", newline="") as fc, open(paths["test_smiles_csv"], "w", newline="") as ft, \
            SDFWriter(paths["sdf"]) as sdf, SDFWriter(paths["test_sdf"]) as test_sdf:
        wc, wt = csv.writer(fc), csv.writer(ft)
        wc.writerow(["smiles", target, "split"])
        wt.writerow(["smiles", "name"])
        for k, part in rows:
            value = float(qm9.y[k, col])
            text = f"{value:.10g}"  # the same digits in the CSV and the SD field
            smiles = qm9.smiles[k]
            if Chem.MolFromSmiles(smiles) is None:
                raise SystemExit(f"QM9 SMILES of {qm9.name(k)} does not parse with RDKit: {smiles}")
            mol = _molecule_3d(qm9, k, Chem, rdDetermineBonds, from_smiles)
            props = {target: float(text), "split": part}
            sdf.write(mol, name=qm9.name(k), properties=props)
            wc.writerow([smiles, text, part])
            if part == "test":
                test_sdf.write(mol, name=qm9.name(k), properties=props)
                wt.writerow([smiles, qm9.name(k)])
            for key, v in (("name", qm9.name(k)), ("split", part), ("y", float(text)), ("smiles", smiles),
                           ("n_atoms", mol.GetNumAtoms())):
                labels[key].append(v)
    # chemprop's --splits-file: a list of {train, val, test} row-index lists (one entry = one replicate).
    index = {p: [i for i, s in enumerate(labels["split"]) if s == p] for p in ("train", "val", "test")}
    paths["splits_json"].write_text(json.dumps([index]) + "\n")
    check_sdf_roundtrip(paths["sdf"], target, labels, qm9, rows)
    return {"paths": paths, "labels": labels, "qm9_positions": [k for k, _ in rows],
            "bonds_from_smiles": from_smiles,
            "n": {p: len(v) for p, v in index.items()}}


def _molecule_3d(qm9, k: int, Chem, rdDetermineBonds, from_smiles: list):
    """RDKit molecule of QM9 molecule ``k``: its DFT geometry with bonds perceived from it (``DetermineBonds``,
    neutral). Where no consistent bond orders exist (about 5% of QM9: strained cages whose long C-C
    contacts count as bonds), the bonds of QM9's SMILES, matched onto the geometry's connectivity."""
    m = qm9.molecule(k)
    table = Chem.GetPeriodicTable()
    xyz = f"{m.n_atoms}\n{qm9.name(k)}\n" + "".join(
        f"{table.GetElementSymbol(int(z))} {x:.6f} {y:.6f} {w:.6f}\n" for z, (x, y, w) in zip(m.z, m.pos, strict=True))
    mol = Chem.MolFromXYZBlock(xyz)
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        return mol
    except Exception:  # noqa: BLE001  (RDKit raises ValueError or RuntimeError)
        pass
    template = Chem.AddHs(Chem.MolFromSmiles(qm9.smiles[k]))
    Chem.Kekulize(template, clearAromaticFlags=True)
    graph = Chem.RWMol(template)  # the SMILES' graph: elements and single bonds only
    for bond in graph.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
    for atom in graph.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    geo = Chem.MolFromXYZBlock(xyz)
    rdDetermineBonds.DetermineConnectivity(geo)
    match = geo.GetSubstructMatch(graph) if geo.GetNumAtoms() == template.GetNumAtoms() else ()
    if not match:
        raise SystemExit(f"{qm9.name(k)}: no bond orders from its geometry, and its SMILES {qm9.smiles[k]} "
                         "does not match the geometry's connectivity")
    rw = Chem.RWMol(Chem.MolFromXYZBlock(xyz))
    for bond in template.GetBonds():
        rw.AddBond(match[bond.GetBeginAtomIdx()], match[bond.GetEndAtomIdx()], bond.GetBondType())
    for atom in template.GetAtoms():
        rw.GetAtomWithIdx(match[atom.GetIdx()]).SetFormalCharge(atom.GetFormalCharge())
    mol = rw.GetMol()
    Chem.SanitizeMol(mol)
    from_smiles.append(qm9.name(k))
    return mol


def check_sdf_roundtrip(sdf: Path, target: str, labels: dict, qm9, rows: list) -> None:
    """Every SDF record reads back through se3mol's reader with its atoms, coordinates, target and split."""
    import numpy as np

    from se3mol.io import read_records

    n = 0
    for rec, name, part, y, (k, _) in zip(read_records([str(sdf)]), labels["name"], labels["split"],
                                          labels["y"], rows, strict=True):
        m = qm9.molecule(k)
        problems = []
        if not rec.ok:
            problems.append(f"not read: {rec.error}")
        else:
            if rec.molecule.n_atoms != m.n_atoms or not np.array_equal(rec.molecule.z, m.z):
                problems.append(f"atoms {rec.molecule.n_atoms} != {m.n_atoms}")
            elif np.abs(rec.molecule.pos - m.pos).max() > 1e-3:
                problems.append("coordinates moved")
        if rec.id != name:
            problems.append(f"title {rec.id!r} != {name!r}")
        if not math.isclose(float(rec.properties.get(target, "nan")), y, rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"{target} {rec.properties.get(target)!r} != {y!r}")
        if rec.properties.get("split") != part:
            problems.append(f"split {rec.properties.get('split')!r} != {part!r}")
        if problems:
            raise SystemExit(f"{sdf} record {rec.index + 1} ({name}) does not round-trip: {'; '.join(problems)}")
        n += 1
    print(f"{sdf.name}: {n} records read back through se3mol.io.read_records", file=sys.stderr)


# ------------------------------------------------------------------------------------------ processes

def thread_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads)}


def run_timed(cmd: list[str], log: Path, env: dict, watch: Path | None = None, limit_s: float | None = None) -> dict:
    """Run ``cmd`` (output to ``log``); wall time, exit code, and the times at which ``watch`` was rewritten
    (chemprop rewrites ``last.ckpt`` after every epoch's validation). Killed after ``limit_s`` seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    stamps: list[float] = []
    last = None
    load_before = round(os.getloadavg()[0], 2)
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        killed = False
        while proc.poll() is None:
            time.sleep(0.05)
            if watch is not None and watch.exists():
                mtime = watch.stat().st_mtime_ns
                if mtime != last:
                    last = mtime
                    stamps.append(time.perf_counter() - t0)
            if limit_s is not None and time.perf_counter() - t0 > limit_s and not killed:
                proc.terminate()
                killed = True
        wall = time.perf_counter() - t0
    return {"rc": proc.returncode, "wall_s": round(wall, 1), "epoch_end_s": [round(s, 1) for s in stamps],
            "killed_at_limit": killed, "load_before": load_before, "load_after": round(os.getloadavg()[0], 2)}


def shown(cmd: list[str]) -> str:
    """A command as a person would type it: tool name first, paths relative to the repository."""
    text = shlex.join([Path(cmd[0]).name, *cmd[1:]])
    return text.replace(str(ROOT) + "/", "")


def tail(log: Path, n: int = 15) -> str:
    lines = [ln for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


# ------------------------------------------------------------------------------------------- chemprop

def chemprop_train_cmd(task: dict, target: str, epochs: int, out: Path, seed: int) -> list[str]:
    p = task["paths"]
    return [str(CHEMPROP_ENV / "bin" / "chemprop"), "train", "--data-path", str(p["csv"]),
            "--smiles-columns", "smiles", "--target-columns", target, "--splits-file", str(p["splits_json"]),
            "--task-type", "regression", "--metrics", "mae", "rmse", "--epochs", str(epochs),
            "--num-workers", "0", "--accelerator", "cpu", "--devices", "1", "--pytorch-seed", str(seed),
            "--output-dir", str(out)]


def chemprop_epochs_for(budget_s: float, probe: dict, probe_epochs: int) -> tuple[int, float, float]:
    """Epochs that fit in ``budget_s``: (epochs, seconds per epoch, start-up and tear-down seconds)."""
    ends = probe["epoch_end_s"]
    if len(ends) >= 2:  # first to last epoch end (a poll may miss a rewrite of a very short epoch)
        per_epoch = (ends[-1] - ends[0]) / (probe_epochs - 1)
    else:  # no per-epoch stamps: the whole probe over its epochs (over-counts start-up, so fewer epochs)
        per_epoch = probe["wall_s"] / probe_epochs
    overhead = max(0.0, probe["wall_s"] - probe_epochs * per_epoch)
    epochs = math.floor((budget_s - overhead) / per_epoch)
    return max(epochs, CHEMPROP_WARMUP_EPOCHS + 1), per_epoch, overhead


def train_std(task: dict) -> float:
    """Population standard deviation of the training labels: chemprop's target scale (a StandardScaler)."""
    y = [v for v, s in zip(task["labels"]["y"], task["labels"]["split"], strict=True) if s == "train"]
    mean = sum(y) / len(y)
    return math.sqrt(sum((v - mean) ** 2 for v in y) / len(y))


def chemprop_val_curve(model_dir: Path, scale: float) -> list[dict]:
    """Per-epoch validation metrics from chemprop's CSV logger (empty if it logged elsewhere).

    chemprop v2 keeps its output unscaling off during validation, so ``val/mae``, ``val/rmse`` and
    ``val_loss`` are in units of the training labels' standard deviation; ``val_mae`` here is in the
    target's unit (``val/mae`` x ``scale``)."""
    files = sorted(model_dir.glob("trainer_logs/version_*/metrics.csv"))
    if not files:
        return []
    with open(files[-1]) as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_loss")]
    keep = ("val_loss", "val/mae", "val/rmse")
    curve = [{"epoch": int(r["epoch"]), **{k: float(r[k]) for k in keep if r.get(k)}} for r in rows]
    for r in curve:
        if "val/mae" in r:
            r["val_mae"] = r["val/mae"] * scale
    return curve


def run_chemprop(task: dict, args, work: Path) -> dict:
    env = thread_env(args.threads)
    budget_s = args.budget * 60
    base = work / "chemprop"
    entry: dict = {"tool": "chemprop", "threads": args.threads, "budget_min": args.budget}
    if args.chemprop_epochs:
        epochs, per_epoch, overhead = args.chemprop_epochs, None, None
    else:
        out = base / "probe"
        shutil.rmtree(out, ignore_errors=True)
        cmd = chemprop_train_cmd(task, args.target, args.probe_epochs, out, args.seed)
        print(f"chemprop probe: {args.probe_epochs} epochs", file=sys.stderr, flush=True)
        probe = run_timed(cmd, base / "probe.log", env, watch=out / "model_0" / "checkpoints" / "last.ckpt")
        if probe["rc"] != 0:
            raise SystemExit(f"chemprop probe run failed (rc {probe['rc']}):\n{tail(base / 'probe.log')}")
        epochs, per_epoch, overhead = chemprop_epochs_for(budget_s, probe, args.probe_epochs)
        entry["probe"] = {"command": shown(cmd), **probe, "s_per_epoch": round(per_epoch, 2),
                          "startup_s": round(overhead, 1)}
        print(f"chemprop probe: {per_epoch:.1f} s/epoch, {overhead:.0f} s start-up -> {epochs} epochs "
              f"in {args.budget:g} min", file=sys.stderr, flush=True)
    out = base / "train"
    shutil.rmtree(out, ignore_errors=True)
    cmd = chemprop_train_cmd(task, args.target, epochs, out, args.seed)
    print(f"chemprop train: {epochs} epochs", file=sys.stderr, flush=True)
    run = run_timed(cmd, base / "train.log", env, watch=out / "model_0" / "checkpoints" / "last.ckpt",
                    limit_s=max(2 * budget_s, budget_s + 600))
    if run["rc"] != 0:
        raise SystemExit(f"chemprop train failed (rc {run['rc']}):\n{tail(base / 'train.log')}")
    model = out / "model_0" / "best.pt"
    preds = base / "test_predictions.csv"
    pcmd = [str(CHEMPROP_ENV / "bin" / "chemprop"), "predict", "--test-path", str(task["paths"]["test_smiles_csv"]),
            "--smiles-columns", "smiles", "--model-paths", str(model), "--preds-path", str(preds),
            "--num-workers", "0", "--accelerator", "cpu", "--devices", "1"]
    pred = run_timed(pcmd, base / "predict.log", env)
    if pred["rc"] != 0:
        raise SystemExit(f"chemprop predict failed (rc {pred['rc']}):\n{tail(base / 'predict.log')}")
    mae, n = chemprop_test_mae(preds, task, args.target)
    scale = train_std(task)
    curve = chemprop_val_curve(out / "model_0", scale)
    best = min(curve, key=lambda r: r["val_loss"]) if curve else {}
    ends = run["epoch_end_s"]
    entry.update({
        "test_mae": mae, "test_n": n, "epochs": epochs, "best_epoch": best.get("epoch"),
        "best_val_mae": best.get("val_mae"), "best_val_mae_in_std_units": best.get("val/mae"),
        "target_std_train": scale, "train_wall_s": run["wall_s"],
        "s_per_epoch_measured": round((ends[-1] - ends[0]) / (epochs - 1), 2) if len(ends) > 1 else None,
        "first_epoch_end_s": ends[0] if ends else None, "predict_wall_s": pred["wall_s"],
        "load_before": run["load_before"], "load_after": run["load_after"],
        "chemprop_log_test_mae": chemprop_logged_test_mae(base / "train.log"),
        "commands": {"train": shown(cmd), "predict": shown(pcmd)},
        "loss": "mse (chemprop default), checkpoint of the lowest validation loss",
        "run_dir": str(out).replace(str(ROOT) + "/", ""),
    })
    if per_epoch is not None:
        entry["planned"] = {"s_per_epoch": round(per_epoch, 2), "startup_s": round(overhead, 1)}
    return entry


def chemprop_test_mae(preds: Path, task: dict, target: str) -> tuple[float, int]:
    """Test MAE from ``chemprop predict``'s CSV, against our own labels (matched by molecule name).

    The predictions CSV repeats the input columns and adds one named after the target; an input column of
    that name would be overwritten, which is why the test input carries SMILES and names only."""
    lab = task["labels"]
    truth = {n: y for n, s, y in zip(lab["name"], lab["split"], lab["y"], strict=True) if s == "test"}
    with open(preds) as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(truth) or {r["name"] for r in rows} != set(truth):
        raise SystemExit(f"{preds}: {len(rows)} predictions for {len(truth)} test molecules")
    errors = [abs(float(r[target]) - truth[r["name"]]) for r in rows]
    return sum(errors) / len(errors), len(errors)


def chemprop_logged_test_mae(log: Path) -> float | None:
    """chemprop train's own ``test/mae`` line (for the record only; the MAE reported is computed here)."""
    value = None
    for line in log.read_text(errors="replace").splitlines():
        if "test/mae:" in line:
            try:
                value = float(line.rsplit("test/mae:", 1)[1].split()[0])
            except (IndexError, ValueError):
                pass
    return value


# --------------------------------------------------------------------------------------------- se3mol

def se3mol_train_cmd(task: dict, args, out: Path) -> list[str]:
    from se3mol.targets import QM9_TARGETS

    spec = f"{args.target}:{QM9_TARGETS[args.target].unit}"  # pooling: that of the QM9 target (sum for Cv)
    cmd = [str(SE3MOL), "train", "--data", str(task["paths"]["sdf"]), "--target", spec, "--split", "column:split",
           "--max-time", f"{args.budget:g}m", "--epochs", "1000", "--model", args.model]
    for s in args.set:
        cmd += ["--set", s]
    if args.lr is not None:
        cmd += ["--lr", f"{args.lr:g}"]
    return cmd + ["--batch-size", str(args.batch_size), "--out", str(out), "--seed", str(args.seed)]


def se3mol_evaluate_cmd(task: dict, args, out: Path) -> list[str]:
    return [str(SE3MOL), "evaluate", str(out / "best.pt"), str(task["paths"]["test_sdf"]), "--target", args.target,
            "--plot", str(out.parent / "parity_test.png"), "--output", str(out.parent / "test_predictions.csv")]


def read_se3mol_test_mae(run_dir: Path, target: str) -> tuple[float, dict]:
    """se3mol's test MAE of ``target`` from ``run_dir/results.json`` (``{"test_mae": {target: value}, ...}``),
    and the whole file. Adapt here if training's results file changes shape."""
    results = json.loads((run_dir / "results.json").read_text())
    mae = results["test_mae"]
    return float(mae[target] if isinstance(mae, dict) else mae), results


def read_se3mol_evaluate_mae(stdout: str, target: str) -> float | None:
    """Best effort: the MAE of ``target`` in the last JSON line ``se3mol evaluate`` prints
    (``{"metrics": {target: {"mae": ...}}, ...}``)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        metrics = d.get("metrics") if isinstance(d, dict) else None
        if isinstance(metrics, dict) and isinstance(metrics.get(target), dict) and "mae" in metrics[target]:
            return float(metrics[target]["mae"])
        for key in ("test_mae", "mae"):
            v = d.get(key) if isinstance(d, dict) else None
            if isinstance(v, dict) and target in v:
                return float(v[target])
            if isinstance(v, (int, float)):
                return float(v)
    return None


def run_se3mol(task: dict, args, work: Path) -> dict:
    env = thread_env(args.threads)
    out = work / "se3mol" / "train"
    shutil.rmtree(out, ignore_errors=True)
    cmd = se3mol_train_cmd(task, args, out)
    print(f"se3mol train: {args.budget:g} min", file=sys.stderr, flush=True)
    run = run_timed(cmd, work / "se3mol" / "train.log", env, limit_s=max(2 * args.budget * 60, args.budget * 60 + 600))
    if run["rc"] != 0:
        raise SystemExit(f"se3mol train failed (rc {run['rc']}):\n{tail(work / 'se3mol' / 'train.log')}")
    mae, results = read_se3mol_test_mae(out, args.target)
    ecmd = se3mol_evaluate_cmd(task, args, out)
    t0 = time.perf_counter()
    ev = subprocess.run(ecmd, env=env, capture_output=True, text=True)
    evaluate = {"command": shown(ecmd), "rc": ev.returncode, "wall_s": round(time.perf_counter() - t0, 1),
                "test_mae": read_se3mol_evaluate_mae(ev.stdout, args.target) if ev.returncode == 0 else None}
    if ev.returncode != 0:
        evaluate["error"] = (ev.stderr.strip().splitlines() or [""])[-1][:300]
    return {"tool": "se3mol", "threads": args.threads, "budget_min": args.budget, "test_mae": mae,
            "test_n": results.get("test_n"), "epochs": results.get("epochs_run"),
            "best_epoch": results.get("best_epoch"), "best_val_mae": (results.get("val_mae") or {}).get(args.target)
            if isinstance(results.get("val_mae"), dict) else results.get("val_mae"),
            "train_wall_s": run["wall_s"], "training_time_s": results.get("wall_time_s"),
            "load_before": run["load_before"], "load_after": run["load_after"],
            "commands": {"train": shown(cmd), "evaluate": evaluate["command"]}, "evaluate": evaluate,
            "model": {"family": args.model, "set": args.set, "batch_size": args.batch_size, "lr": args.lr},
            "loss": "se3mol default", "run_dir": str(out).replace(str(ROOT) + "/", "")}


# -------------------------------------------------------------------------------------------- report

def machine() -> dict:
    from se3mol.runtime import cpu_name

    cpu = cpu_name()
    import torch

    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "se3mol_env": {"torch": torch.__version__}}
    probe = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
             "('chemprop', 'torch', 'lightning', 'rdkit')}))")
    try:
        out = subprocess.run([str(CHEMPROP_ENV / "bin" / "python"), "-W", "ignore", "-c", probe],
                             capture_output=True, text=True, check=True).stdout
        info["chemprop_env"] = json.loads(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        info["chemprop_env"] = None
    try:
        from importlib.metadata import version

        info["se3mol_env"]["se3mol"] = version("se3mol")
    except Exception:  # noqa: BLE001
        pass
    return info


def load_tasks(stem: Path) -> dict[str, dict]:
    """The measured tasks by key (``{}`` before the first run)."""
    path = stem.with_name(stem.name + ".json")
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    return report.get("tasks", report)  # results written before the shared writer: the bare mapping


def write_report(stem: Path, results: dict) -> None:
    lines = ["Same molecules and split for both tools; each trains for the same wall-clock budget on the same "
             "threads. chemprop learns from the SMILES (2D graph), se3mol from the DFT geometries (SDF). "
             "Test MAE of each tool's best-validation model; wall time of the whole training process "
             "(start-up, featurisation, epochs, its final test pass). A load average above the machine's cores "
             "means other jobs shared the CPU during that run.", ""]
    for key, r in results.items():
        t = r["task"]
        lines += [f"## {key}: {t['target']} ({t['unit']}), {t['n']['train']} / {t['n']['val']} / "
                  f"{t['n']['test']} molecules", "",
                  f"First {t['n']['train']}, {t['n']['val']} and {t['n']['test']} molecules of QM9's standard "
                  "train / val / test indices. Files: " + ", ".join(f"`{v}`" for v in t["files"].values()) + ".",
                  "", f"| tool | test MAE {t['unit']} | best val MAE | train/val/test | budget min | training wall s "
                  "| epochs (best) | s/epoch | threads | load before/after |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for tool in TOOLS:
            e = r.get(tool)
            if not e:
                lines.append(f"| {tool} | not run | | | | | | | | |")
                continue
            spe, val = e.get("s_per_epoch_measured"), e.get("best_val_mae")
            lines.append(f"| {tool} | {e['test_mae']:.4g} | {'' if val is None else f'{val:.4g}'} | "
                         f"{t['n']['train']}/{t['n']['val']}/{e['test_n']} | "
                         f"{e['budget_min']:g} | {e['train_wall_s']:.0f} | {e['epochs']} ({e['best_epoch']}) | "
                         f"{'' if spe is None else f'{spe:.1f}'} | {e['threads']} | "
                         f"{e['load_before']:.2f}/{e['load_after']:.2f} |")
        lines.append("")
        for tool in TOOLS:
            e = r.get(tool)
            if not e:
                continue
            lines += [f"{tool} (started {e.get('started', '?')}):", ""]
            lines += [f"    {c}" for c in e["commands"].values()]
            if "probe" in e:
                p = e["probe"]
                lines += ["", f"Epochs from a {p['command'].split('--epochs ')[1].split()[0]}-epoch probe "
                          f"({p['wall_s']:.0f} s: {p['s_per_epoch']:.1f} s/epoch, {p['startup_s']:.0f} s start-up "
                          "and tear-down)."]
            if tool == "chemprop" and e.get("best_val_mae_in_std_units") is not None:
                lines.append(f"chemprop logs validation metrics in units of the training labels' standard deviation "
                             f"({e['target_std_train']:.4g}): val/mae {e['best_val_mae_in_std_units']:.4g}.")
            if tool == "chemprop" and e.get("chemprop_log_test_mae") is not None:
                lines.append(f"chemprop's own log line: test/mae {e['chemprop_log_test_mae']:.4g} "
                             f"(the MAE above is computed from `chemprop predict`'s output).")
            if tool == "se3mol" and e.get("evaluate", {}).get("test_mae") is not None:
                lines.append(f"`se3mol evaluate`: test MAE {e['evaluate']['test_mae']:.4g}.")
            lines.append("")
        m = r["machine"]
        cp = m.get("chemprop_env") or {}
        lines += [f"Machine: {m['cpu']}, {m['cores']} cores; se3mol env torch {m['se3mol_env'].get('torch')}; "
                  f"chemprop env chemprop {cp.get('chemprop')}, torch {cp.get('torch')}, lightning "
                  f"{cp.get('lightning')}, rdkit {cp.get('rdkit')}.", ""]
    write_result(stem, "se3mol against chemprop v2 on a QM9 subset", {"tasks": results}, lines)


def main() -> None:
    from se3mol.data.qm9 import TARGET_NAMES
    from se3mol.targets import QM9_TARGETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default="chemprop,se3mol", help="comma-separated: chemprop, se3mol")
    ap.add_argument("--target", default="Cv", choices=TARGET_NAMES)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--budget", type=float, default=10.0, help="training wall-clock minutes per tool")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_own_data", help="data and run directories")
    ap.add_argument("--probe-epochs", type=int, default=CHEMPROP_WARMUP_EPOCHS + 1,
                    help="epochs of chemprop's timing probe (more than its 2 warm-up epochs)")
    ap.add_argument("--chemprop-epochs", type=int, default=None, help="skip the probe and train this many epochs")
    ap.add_argument("--model", default="egnn", help="se3mol model family")
    ap.add_argument("--set", action="append", default=None, help="se3mol model setting KEY=VALUE (repeatable)")
    ap.add_argument("--batch-size", type=int, default=32, help="se3mol batch size")
    ap.add_argument("--lr", type=float, default=None, help="se3mol peak learning rate (default: se3mol's, 5e-4)")
    ap.add_argument("--out", type=Path, default=RESULTS / "own_data_vs_chemprop",
                    help="results file stem (.json, .md appended)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json, run nothing")
    args = ap.parse_args()
    if args.report_only:
        write_report(args.out, load_tasks(args.out))
        return
    args.set = args.set or ["hidden=128", "layers=4"]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not tools or set(tools) - set(TOOLS):
        ap.error(f"--tools: choose from {', '.join(TOOLS)}")
    if "chemprop" in tools and not (CHEMPROP_ENV / "bin" / "chemprop").exists():
        ap.error(f"no chemprop in {CHEMPROP_ENV}: run benchmarks/peers/chemprop_env.sh {CHEMPROP_ENV} "
                 "(or set CHEMPROP_ENV)")
    if args.probe_epochs <= CHEMPROP_WARMUP_EPOCHS:
        ap.error(f"--probe-epochs must exceed chemprop's {CHEMPROP_WARMUP_EPOCHS} warm-up epochs")

    work = args.work.resolve()
    task = build_task(args.target, args.n_train, args.n_val, args.n_test, work)
    if task["bonds_from_smiles"]:
        print(f"{len(task['bonds_from_smiles'])} SDF molecules have their bonds from QM9's SMILES (no consistent "
              "bond orders from the geometry)", file=sys.stderr)
    key = f"{args.target}-{task['n']['train']}-{task['n']['val']}-{task['n']['test']}"
    results = load_tasks(args.out)
    entry = results.get(key, {})
    entry["task"] = {"target": args.target, "unit": QM9_TARGETS[args.target].unit, "n": task["n"],
                     "source": "QM9 (qm9pack via se3mol.data.qm9), first N of each standard-split part",
                     "files": {k: str(v).replace(str(ROOT) + "/", "") for k, v in task["paths"].items()},
                     "sdf_bonds_from_smiles": task["bonds_from_smiles"],
                     "command": invocation()}
    entry["machine"] = machine()
    for tool in tools:
        stamp = time.strftime("%Y-%m-%d %H:%M")
        e = run_chemprop(task, args, work) if tool == "chemprop" else run_se3mol(task, args, work)
        e["started"] = stamp
        entry[tool] = e
        results[key] = entry
        write_report(args.out, results)  # after each tool, so a later failure keeps the first
        print(f"{tool}: test MAE {e['test_mae']:.4g} {entry['task']['unit']}, {e['epochs']} epochs, "
              f"{e['train_wall_s']:.0f} s", file=sys.stderr, flush=True)
    results[key] = entry
    write_report(args.out, results)


if __name__ == "__main__":
    main()
