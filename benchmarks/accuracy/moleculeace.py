"""se3mol against chemprop v2 and an SVM on ECFP, on the MoleculeACE development sets: same splits, same CPU budget.

    python -m benchmarks.accuracy.moleculeace                                   # the 8 dev sets, 5 minutes each tool
    python -m benchmarks.accuracy.moleculeace --sets CHEMBL2047_EC50 --tools se3mol --budget 2
    python -m benchmarks.accuracy.moleculeace --report-only

MoleculeACE (van Tilborg et al., J. Chem. Inf. Model. 2022; ``pip install --no-deps MoleculeACE==3.0.0``, data
only: a benchmark dependency, never se3mol's) ships 30 ChEMBL bioactivity sets (``y``: -log10 of EC50 or Ki in
molar units) with a train/test split and a flag on each molecule that is part of an activity cliff. The own-data
issue names the eight that se3mol may be developed and tuned on (:data:`DEV_SETS`); the other 22 are kept for a
final, independent check, and this script refuses them.

For each set: validation is a seeded 10% of the training molecules, the same rows for every tool. Each tool gets
``--budget`` minutes of one thread (``OMP_NUM_THREADS=1``):

- ``se3mol``: its default run on the user's CSV of SMILES, ``se3mol train --data data.csv --target y --split
  column:split --max-time BUDGET`` (nothing else set: what a user gets), then ``se3mol evaluate`` of ``best.pt`` on
  the test rows;
- ``chemprop``: its defaults (D-MPNN), the budget turned into epochs by a 3-epoch probe run as in
  :mod:`benchmarks.accuracy.own_data_vs_chemprop`, then ``chemprop predict`` on the test SMILES
  (``benchmarks/peers/chemprop_env.sh`` makes its venv);
- ``svm``: MoleculeACE's best classical baseline, support vector regression on 2048-bit ECFP4 (Morgan radius 2)
  with a Tanimoto kernel, C chosen on the validation rows from 0.1, 1, 10, 100 (scikit-learn and RDKit of the
  chemprop venv); no budget, it takes seconds.

Reported per set and tool: RMSE on all test molecules and on the test molecules in activity cliffs (MoleculeACE's
two metrics), MAE, how many test molecules got a prediction, and the CPU seconds of the whole process (user +
system, start-up and featurisation included). Then, per tool, the median over the sets. Work files go to
``--work`` (default ``runs/bench_moleculeace/``). Writes ``benchmarks/accuracy/results/moleculeace_dev.{json,md}``
(``--out``); a tool not run keeps its earlier entry.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import resource
import shlex
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks._results import ROOT, results_dir, write_result
from benchmarks.accuracy.own_data_vs_chemprop import (
    CHEMPROP_ENV,
    SE3MOL,
    chemprop_epochs_for,
    run_timed,
    shown,
    tail,
    thread_env,
)

RESULTS = results_dir(__file__)
#: The sets the own-data issue allows to develop and tune on (smallest first). The other 22 MoleculeACE sets are
#: the final, independent check: never trained or tuned on here.
DEV_SETS = ("CHEMBL2047_EC50", "CHEMBL4203_Ki", "CHEMBL262_Ki", "CHEMBL237_EC50", "CHEMBL218_EC50",
            "CHEMBL2147_Ki", "CHEMBL219_Ki", "CHEMBL234_Ki")
TOOLS = ("svm", "chemprop", "se3mol")
PROBE_EPOCHS = 3


def data_file(name: str) -> Path:
    """The CSV of dev set ``name`` in the installed MoleculeACE package."""
    if name not in DEV_SETS:
        raise SystemExit(f"{name} is not one of the development sets ({', '.join(DEV_SETS)}): the others are kept "
                         "for the final, independent check")
    spec = importlib.util.find_spec("MoleculeACE")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MoleculeACE is not installed: pip install --no-deps MoleculeACE==3.0.0 (data only)")
    return Path(next(iter(spec.submodule_search_locations))) / "Data" / "benchmark_data" / f"{name}.csv"


def write_train_smiles(path: Path) -> int:
    """Write the training-split SMILES of every development set, one per line, unique, leaving out any molecule
    that is a test molecule of any development set (sets share molecules): the drug-sized source of unlabelled
    molecules for the GFN2-xTB pretraining data (``python -m se3mol.data.xtb_labels build ... --source PATH``).
    Returns how many were written."""
    seen: dict[str, None] = {}
    test: set[str] = set()
    for name in DEV_SETS:
        with data_file(name).open() as f:
            for r in csv.DictReader(f):
                if r["split"] == "train":
                    seen.setdefault(r["smiles"], None)
                else:
                    test.add(r["smiles"])
    seen = {s: None for s in seen if s not in test}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in seen))
    return len(seen)


def build_task(name: str, work: Path, seed: int = 0) -> dict:
    """Write ``data.csv`` (name, smiles, y, split), chemprop's ``splits.json`` and ``test_smiles.csv``, and
    ``test.csv`` (se3mol evaluate's input) into ``work``; return the labels and paths."""
    with data_file(name).open() as f:
        rows = list(csv.DictReader(f))
    train = [k for k, r in enumerate(rows) if r["split"] == "train"]
    rng = np.random.default_rng(seed)
    val = set(rng.choice(train, size=max(1, round(0.1 * len(train))), replace=False).tolist())
    work.mkdir(parents=True, exist_ok=True)
    labels = {"name": [], "smiles": [], "y": [], "split": [], "cliff": []}
    for k, r in enumerate(rows):
        split = "test" if r["split"] == "test" else ("val" if k in val else "train")
        labels["name"].append(f"m{k:05d}")
        labels["smiles"].append(r["smiles"])
        labels["y"].append(float(r["y"]))
        labels["split"].append(split)
        labels["cliff"].append(r["cliff_mol"] == "1")
    paths = {"csv": work / "data.csv", "splits_json": work / "splits.json", "test_smiles_csv": work / "test_smiles.csv",
             "test_csv": work / "test.csv"}
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "smiles", "y", "split"])
        w.writerows(zip(labels["name"], labels["smiles"], labels["y"], labels["split"], strict=True))
    idx = {s: [k for k, v in enumerate(labels["split"]) if v == s] for s in ("train", "val", "test")}
    paths["splits_json"].write_text(json.dumps([idx]))
    with paths["test_smiles_csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", "name"])
        w.writerows((labels["smiles"][k], labels["name"][k]) for k in idx["test"])
    with paths["test_csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "smiles", "y"])
        w.writerows((labels["name"][k], labels["smiles"][k], labels["y"][k]) for k in idx["test"])
    return {"set": name, "labels": labels, "paths": paths, "sizes": {s: len(v) for s, v in idx.items()}}


def scores(task: dict, predicted: dict[str, float]) -> dict:
    """RMSE on all test molecules and on the cliff ones, MAE, and how many test molecules have a prediction."""
    lab = task["labels"]
    test = [k for k, s in enumerate(lab["split"]) if s == "test"]
    got = [k for k in test if lab["name"][k] in predicted]

    def rmse(ks: list[int]) -> float | None:
        if not ks:
            return None
        return math.sqrt(sum((predicted[lab["name"][k]] - lab["y"][k]) ** 2 for k in ks) / len(ks))

    cliff = [k for k in got if lab["cliff"][k]]
    return {"rmse": rmse(got), "rmse_cliff": rmse(cliff),
            "mae": sum(abs(predicted[lab["name"][k]] - lab["y"][k]) for k in got) / len(got) if got else None,
            "test_n": len(got), "test_total": len(test), "cliff_n": len(cliff),
            "cliff_total": sum(lab["cliff"][k] for k in test)}


def cpu_timed(cmd: list[str], log: Path, env: dict, **kw) -> dict:
    """:func:`run_timed`, plus the CPU seconds (user + system) the command and its children used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_timed(cmd, log, env, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run["cpu_s"] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1)
    return run


# ------------------------------------------------------------------------------------------------- tools

def run_se3mol(task: dict, budget_min: float, work: Path, seed: int, label: str = "se3mol",
               extra: list[str] | None = None) -> dict:
    """se3mol's default run, or with ``extra`` options (an experiment, recorded under ``label``)."""
    env = thread_env(1)
    base = work / label
    out = base / "train"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(SE3MOL), "train", "--data", str(task["paths"]["csv"]), "--target", "y", "--split", "column:split",
           "--id-column", "name", "--max-time", f"{budget_min:g}m", "--seed", str(seed), "--out", str(out),
           *(extra or [])]
    # The budget is training time; featurising comes first (ETKDG + MMFF, seconds for a peptide of 150 heavy atoms).
    n_molecules = sum(task["sizes"].values())
    run = cpu_timed(cmd, base / "train.log", env, limit_s=budget_min * 60 * 2 + 600 + 3 * n_molecules)
    if run["rc"] != 0:
        return {"tool": label, "error": f"train failed (rc {run['rc']}): {tail(base / 'train.log', 5)}"}
    preds = base / "test_predictions.csv"
    ecmd = [str(SE3MOL), "evaluate", str(out / "best.pt"), str(task["paths"]["test_csv"]), "--target", "y",
            "--id-column", "name", "--plot", str(base / "parity.png"), "--output", str(preds)]
    ev = cpu_timed(ecmd, base / "evaluate.log", env)
    if ev["rc"] != 0:
        return {"tool": label, "error": f"evaluate failed: {tail(base / 'evaluate.log', 5)}"}
    with preds.open() as f:
        predicted = {r["id"]: float(r["y_pred"]) for r in csv.DictReader(f)}
    results = json.loads((out / "results.json").read_text())
    return {"tool": label, "options": extra or [], **scores(task, predicted),
            "cpu_s": round(run["cpu_s"] + ev["cpu_s"], 1),
            "wall_s": round(run["wall_s"] + ev["wall_s"], 1), "epochs": results.get("epochs_run"),
            "best_epoch": results.get("best_epoch"), "commands": {"train": shown(cmd), "evaluate": shown(ecmd)},
            "load": [run["load_before"], run["load_after"]]}


def chemprop_cmd(task: dict, epochs: int, out: Path, seed: int) -> list[str]:
    p = task["paths"]
    return [str(CHEMPROP_ENV / "bin" / "chemprop"), "train", "--data-path", str(p["csv"]), "--smiles-columns",
            "smiles", "--target-columns", "y", "--splits-file", str(p["splits_json"]), "--task-type", "regression",
            "--epochs", str(epochs), "--num-workers", "0", "--accelerator", "cpu", "--devices", "1",
            "--pytorch-seed", str(seed), "--output-dir", str(out)]


def run_chemprop(task: dict, budget_min: float, work: Path, seed: int) -> dict:
    env = thread_env(1)
    base = work / "chemprop"
    shutil.rmtree(base, ignore_errors=True)
    probe_cmd = chemprop_cmd(task, PROBE_EPOCHS, base / "probe", seed)
    probe = cpu_timed(probe_cmd, base / "probe.log", env,
                      watch=base / "probe" / "model_0" / "checkpoints" / "last.ckpt")
    if probe["rc"] != 0:
        return {"tool": "chemprop", "error": f"probe failed: {tail(base / 'probe.log', 5)}"}
    epochs, per_epoch, overhead = chemprop_epochs_for(budget_min * 60, probe, PROBE_EPOCHS)
    cmd = chemprop_cmd(task, epochs, base / "train", seed)
    run = cpu_timed(cmd, base / "train.log", env, watch=base / "train" / "model_0" / "checkpoints" / "last.ckpt",
                    limit_s=budget_min * 60 * 2 + 600)
    if run["rc"] != 0:
        return {"tool": "chemprop", "error": f"train failed: {tail(base / 'train.log', 5)}"}
    preds = base / "test_predictions.csv"
    pcmd = [str(CHEMPROP_ENV / "bin" / "chemprop"), "predict", "--test-path", str(task["paths"]["test_smiles_csv"]),
            "--smiles-columns", "smiles", "--model-paths", str(base / "train" / "model_0" / "best.pt"),
            "--preds-path", str(preds), "--num-workers", "0", "--accelerator", "cpu", "--devices", "1"]
    pr = cpu_timed(pcmd, base / "predict.log", env)
    if pr["rc"] != 0:
        return {"tool": "chemprop", "error": f"predict failed: {tail(base / 'predict.log', 5)}"}
    with preds.open() as f:
        predicted = {r["name"]: float(r["y"]) for r in csv.DictReader(f)}
    return {"tool": "chemprop", **scores(task, predicted), "cpu_s": round(run["cpu_s"] + pr["cpu_s"], 1),
            "wall_s": round(run["wall_s"] + pr["wall_s"], 1), "epochs": epochs, "s_per_epoch": round(per_epoch, 2),
            "probe_cpu_s": probe["cpu_s"], "commands": {"train": shown(cmd), "predict": shown(pcmd)},
            "load": [run["load_before"], run["load_after"]]}


SVM_WORKER = r"""
import csv, json, sys
import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from sklearn.svm import SVR
rows = list(csv.DictReader(open(sys.argv[1])))
gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
fps = [gen.GetFingerprint(Chem.MolFromSmiles(r["smiles"])) for r in rows]
def gram(a, b):
    return np.array([DataStructs.BulkTanimotoSimilarity(fps[i], [fps[j] for j in b]) for i in a])
idx = {s: [k for k, r in enumerate(rows) if r["split"] == s] for s in ("train", "val", "test")}
y = np.array([float(r["y"]) for r in rows])
k_tr = gram(idx["train"], idx["train"])
best = None
for c in (0.1, 1.0, 10.0, 100.0):
    m = SVR(kernel="precomputed", C=c).fit(k_tr, y[idx["train"]])
    err = float(np.sqrt(np.mean((m.predict(gram(idx["val"], idx["train"])) - y[idx["val"]]) ** 2)))
    if best is None or err < best[0]:
        best = (err, c)
tv = idx["train"] + idx["val"]
m = SVR(kernel="precomputed", C=best[1]).fit(gram(tv, tv), y[tv])
pred = m.predict(gram(idx["test"], tv))
json.dump({"C": best[1], "val_rmse": best[0], "pred": {rows[k]["name"]: float(p) for k, p in zip(idx["test"], pred)}},
          open(sys.argv[2], "w"))
"""


def run_svm(task: dict, work: Path) -> dict:
    base = work / "svm"
    base.mkdir(parents=True, exist_ok=True)
    script = base / "svm.py"
    script.write_text(SVM_WORKER)
    out = base / "predictions.json"
    cmd = [str(CHEMPROP_ENV / "bin" / "python"), str(script), str(task["paths"]["csv"]), str(out)]
    run = cpu_timed(cmd, base / "svm.log", thread_env(1))
    if run["rc"] != 0:
        return {"tool": "svm", "error": f"failed: {tail(base / 'svm.log', 5)}"}
    d = json.loads(out.read_text())
    return {"tool": "svm", **scores(task, d["pred"]), "cpu_s": run["cpu_s"], "wall_s": run["wall_s"],
            "C": d["C"], "model": "SVR, Tanimoto kernel on ECFP4 (2048 bits), C chosen on validation"}


# ------------------------------------------------------------------------------------------------ report

def report_lines(results: dict) -> list[str]:
    def f(v, d=3):
        return "" if v is None else f"{v:.{d}f}"

    lines = ["RMSE in log units (pEC50 / pKi), on all test molecules and on those in activity cliffs; n: test "
             "molecules with a prediction, of all; CPU s: the whole process (start-up, featurisation, training, "
             "test predictions), one thread.", "",
             "| set | tool | RMSE | RMSE cliffs | MAE | n | CPU s | epochs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    tools = list(TOOLS) + sorted({t for r in results.values() for t in r if t not in TOOLS})
    for name in DEV_SETS:
        for tool in tools:
            e = results.get(name, {}).get(tool)
            if not e:
                continue
            if "error" in e:
                lines.append(f"| {name} | {tool} | error: {e['error'][:80]} |  |  |  |  |  |")
                continue
            shown_tool = tool + (f" (`{' '.join(e['options'])}`)" if e.get("options") else "")
            lines.append(f"| {name} | {shown_tool} | {f(e['rmse'])} | {f(e['rmse_cliff'])} | {f(e['mae'])} | "
                         f"{e['test_n']}/{e['test_total']} | {f(e.get('cpu_s'), 0)} | {e.get('epochs') or ''} |")
    lines += ["", "| tool | sets | median RMSE | median RMSE cliffs | median CPU s |",
              "| --- | --- | --- | --- | --- |"]
    for tool in tools:
        done = [results[n][tool] for n in DEV_SETS if tool in results.get(n, {}) and "error" not in results[n][tool]]
        if done:
            lines.append(f"| {tool} | {len(done)} | {f(statistics.median(e['rmse'] for e in done))} | "
                         f"{f(statistics.median(e['rmse_cliff'] for e in done if e['rmse_cliff'] is not None))} | "
                         f"{f(statistics.median(e['cpu_s'] for e in done), 0)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(DEV_SETS))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--budget", type=float, default=5.0, help="minutes of one thread for se3mol and chemprop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_moleculeace")
    ap.add_argument("--out", type=Path, default=RESULTS / "moleculeace_dev")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--merge", type=Path, nargs="+", default=[], metavar="JSON",
                    help="with --report-only: add the entries of other results files of this harness (runs written "
                         "elsewhere, e.g. in parallel) to --out")
    ap.add_argument("--write-train-smiles", type=Path, metavar="PATH",
                    help="only write the dev sets' training SMILES to PATH (pretraining source) and stop")
    ap.add_argument("--se3mol-args", default="", help="options added to se3mol train (an experiment; recorded "
                    "as tool --label instead of se3mol)")
    ap.add_argument("--label", default="se3mol", help="name of the se3mol entry (default: se3mol, the default run)")
    a = ap.parse_args()
    a.work = a.work.resolve()  # the tools run in their own directories
    if a.write_train_smiles:
        print(f"{write_train_smiles(a.write_train_smiles)} SMILES written to {a.write_train_smiles}")
        return
    previous = a.out.with_suffix(".json")

    def merged(mine: dict) -> dict:
        """The results file as it is now (another run of this harness may have written it since) with this run's
        entries over it."""
        results: dict = json.loads(previous.read_text()).get("results", {}) if previous.exists() else {}
        for name, entries in mine.items():
            results.setdefault(name, {}).update(entries)
        return results

    mine: dict = {}
    for other in a.merge:
        for name, entries in json.loads(other.read_text())["results"].items():
            mine.setdefault(name, {}).update(entries)
    if not a.report_only:
        for name in [s for s in a.sets.split(",") if s]:
            task = build_task(name, a.work / name, a.seed)
            for tool in [t for t in a.tools.split(",") if t]:
                print(f"{name}: {tool} ({task['sizes']})", file=sys.stderr, flush=True)
                if tool == "se3mol":
                    entry = run_se3mol(task, a.budget, a.work / name, a.seed, a.label, shlex.split(a.se3mol_args))
                    tool = a.label
                elif tool == "chemprop":
                    entry = run_chemprop(task, a.budget, a.work / name, a.seed)
                else:
                    entry = run_svm(task, a.work / name)
                entry.update(budget_min=a.budget if tool != "svm" else None, sizes=task["sizes"])
                mine.setdefault(name, {})[tool] = entry
                print(json.dumps(entry), file=sys.stderr, flush=True)
                results = merged(mine)
                write_result(a.out, "MoleculeACE development sets: se3mol, chemprop and an SVM at equal CPU",
                             {"budget_min": a.budget, "seed": a.seed, "results": results}, report_lines(results))
    results = merged(mine)
    write_result(a.out, "MoleculeACE development sets: se3mol, chemprop and an SVM at equal CPU",
                 {"budget_min": a.budget, "seed": a.seed, "results": results}, report_lines(results))


if __name__ == "__main__":
    main()
