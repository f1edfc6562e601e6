"""Learning curve of a QM9 property run, and what more epochs of it would give (issue 20's measured curve).

    python -m benchmarks.accuracy.learning_curve training/qm9-egnn-all12

Reads the run's ``metrics.csv`` (validation MAE per target after every epoch, in the target's unit) and, per
target, fits a power law ``MAE(e) = a * e**-b`` to the epochs from ``--from-epoch`` on (least squares in
log-log) and a power law over a floor ``c + a * e**-b``, and extrapolates both to more epochs. Neither fit knows
the learning-rate schedule (the run's cosine schedule still has most of its length ahead): the two bracket
what more epochs may give; they are not a forecast. Also tabulates the published test MAEs of EGNN (Satorras et
al. 2021, table 3), the SE(3)-Transformer and TFN (Fuchs et al. 2020, table 2) and the goals of issue 20.

Writes ``benchmarks/accuracy/results/learning_curve_<run>.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from benchmarks._results import md_table, results_dir, write_result

# Published QM9 test MAEs in se3mol's units (meV, D, a0^3, a0^2, cal/(mol K)).
PAPERS = {
    "EGNN": {"mu": 0.029, "alpha": 0.071, "homo": 29, "lumo": 25, "gap": 48, "r2": 0.106, "zpve": 1.55, "U0": 11,
             "U": 12, "H": 12, "G": 12, "Cv": 0.031},
    "SE(3)-Transformer": {"mu": 0.051, "alpha": 0.142, "homo": 35, "lumo": 33, "gap": 53, "Cv": 0.054},
    "TFN": {"mu": 0.064, "alpha": 0.223, "homo": 40, "lumo": 38, "gap": 58, "Cv": 0.101},
}
GOALS = {"gap": 60, "homo": 40, "lumo": 40, "mu": 0.06, "alpha": 0.15, "Cv": 0.06, "U0": 20}


def read_curve(run: Path) -> tuple[list[int], dict[str, list[float]]]:
    """Epochs and the validation MAE per target (``val_mae_<target>_<unit>`` columns) of a run's metrics.csv."""
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise SystemExit(f"{run}/metrics.csv has no epochs yet")
    epochs = [int(r["epoch"]) for r in rows]
    curves: dict[str, list[float]] = {}
    for col in rows[0]:
        if col.startswith("val_mae_"):
            curves[col.removeprefix("val_mae_")] = [float(r[col]) for r in rows]
    return epochs, curves


def fit_power_law(epochs: list[int], mae: list[float], floor: float = 0.0) -> tuple[float, float, float]:
    """``a, b`` of ``mae = floor + a * epoch**-b`` (least squares on log(mae - floor) against log epoch) and the
    fit's RMS error in log(mae)."""
    e, m = np.log(np.asarray(epochs, float)), np.asarray(mae, float)
    slope, intercept = np.polyfit(e, np.log(m - floor), 1)
    a, b = math.exp(intercept), -slope
    resid = float(np.sqrt(np.mean((np.log(m) - np.log(floor + a * np.exp(e) ** -b)) ** 2)))
    return a, b, resid


def fit_with_floor(epochs: list[int], mae: list[float]) -> tuple[float, float, float]:
    """``floor, a, b`` of ``mae = floor + a * epoch**-b``: the floor that fits best, searched on a grid from 0 to
    99% of the smallest MAE (the error this schedule would level off at, were the curve to keep its shape)."""
    best = None
    for floor in np.linspace(0.0, 0.99 * min(mae), 200):
        a, b, resid = fit_power_law(epochs, mae, float(floor))
        if best is None or resid < best[3]:
            best = (float(floor), a, b, resid)
    assert best is not None
    return best[0], best[1], best[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a property run directory (metrics.csv)")
    ap.add_argument("--from-epoch", type=int, default=3, help="fit from this epoch on (default 3)")
    ap.add_argument("--to", type=int, nargs="+", default=[30, 100], help="epochs to extrapolate to")
    a = ap.parse_args()

    epochs, curves = read_curve(a.run)
    use = [k for k, e in enumerate(epochs) if e >= a.from_epoch]
    if len(use) < 3:
        raise SystemExit(f"need at least 3 epochs from epoch {a.from_epoch} on; {a.run} has {len(use)}")
    fits = {}
    for column, mae in curves.items():
        target = column.split("_")[0]
        ea, ma = [epochs[k] for k in use], [mae[k] for k in use]
        amp, b, resid = fit_power_law(ea, ma)
        floor, amp_f, b_f = fit_with_floor(ea, ma)
        fits[column] = {"target": target, "epochs": epochs, "val_mae": mae, "a": amp, "b": b,
                        "log_rmse": resid, "last": mae[-1], "floor": floor, "a_floor": amp_f, "b_floor": b_f,
                        "extrapolated": {str(e): amp * e ** -b for e in a.to},
                        "extrapolated_floor": {str(e): floor + amp_f * e ** -b_f for e in a.to},
                        "papers": {p: v[target] for p, v in PAPERS.items() if target in v},
                        "goal": GOALS.get(target)}
    header = ["target (unit)", f"val MAE, epoch {epochs[-1]}", *[f"epoch {e}: power law" for e in a.to],
              *[f"epoch {e}: with floor" for e in a.to], "goal", *PAPERS]
    rows = []
    for column, f in fits.items():
        unit = column[len(f["target"]) + 1:]
        rows.append([f"{f['target']} ({unit})", f"{f['last']:.4g}",
                     *[f"{f['extrapolated'][str(e)]:.3g}" for e in a.to],
                     *[f"{f['extrapolated_floor'][str(e)]:.3g}" for e in a.to],
                     "" if f["goal"] is None else f"{f['goal']:g}",
                     *[f"{f['papers'][p]:g}" if p in f["papers"] else "" for p in PAPERS]])
    lines = [*md_table(header, rows), "",
             f"Validation MAE of `{a.run}` after each of its {epochs[-1]} epochs, extrapolated by two fits to epochs "
             f"{a.from_epoch}..{epochs[-1]}: a power law `a e^-b` (optimistic: it never levels off) and a power law "
             "over a floor, `c + a e^-b` (the floor that fits best). The truth at the end of the run's 100-epoch "
             "cosine schedule depends on its decay, which neither fit knows; read the two as a range, not a "
             "forecast. The papers' and the goals' figures are test MAEs (the run's test MAE is in its model "
             "card); validation and test MAEs of one checkpoint differ by a few percent."]
    stem = results_dir(__file__) / f"learning_curve_{a.run.name}"
    write_result(stem, f"Learning curve of {a.run.name}", {"run": str(a.run), "from_epoch": a.from_epoch,
                                                             "fits": fits}, lines)


if __name__ == "__main__":
    main()
