"""Two methods of the drug benchmark (``benchmarks/conformers/drugs.py``) compared molecule by molecule.

    python -m benchmarks.conformers.drugs_paired A.json:METHOD B.json:METHOD [--out STEM]

Each side is a result file and one of its methods (the same file twice compares two methods of one run). Over
the molecules both scored, it reports the mean difference B - A of COV-R (1.25 and 0.75 A, a failure counting
0), of MAT-R (molecules both finished) and, where both runs scored energies, of the GFN2-xTB energy above the
ensemble minimum (per molecule its median and its lowest, kcal/mol), each with its standard error over
molecules, and how many molecules B does better and worse. The pairing removes the spread between molecules,
which dwarfs the difference between two methods on 100 molecules.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from benchmarks._results import md_table, read_result, write_result

THRESHOLDS = (1.25, 0.75)


def side(spec: str) -> tuple[str, dict[int, dict]]:
    """``FILE.json:METHOD`` as (label, its per-molecule rows by MOSES row)."""
    path, sep, method = spec.partition(".json:")  # a method may have a colon of its own (etkdg:3)
    if not sep or not path or not method:
        sys.exit(f"expected FILE.json:METHOD, got {spec!r}")
    path += ".json"
    report = read_result(path)
    rows = {r["row"]: r for r in report.get("molecules", []) if r["method"] == method}
    if not rows:
        methods = sorted({r["method"] for r in report.get("molecules", [])})
        sys.exit(f"{path} has no per-molecule rows for {method!r} (it has: {', '.join(methods) or 'none'})")
    return f"{Path(path).stem}:{method}", rows


def mean_se(values: list[float]) -> dict[str, float]:
    """Mean and its standard error (NaN where undefined)."""
    if not values:
        return {"mean": math.nan, "se": math.nan}
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return {"mean": statistics.mean(values), "se": se}


def compare(a: dict[int, dict], b: dict[int, dict]) -> dict:
    """Paired differences ``b - a`` over the molecules both have."""
    common = sorted(a.keys() & b.keys())
    out: dict = {"molecules": len(common)}
    for t in THRESHOLDS:
        dc = [_cov(b[m], t) - _cov(a[m], t) for m in common]
        out[f"COV-R@{t}"] = dict(mean_se(dc), better=sum(d > 0 for d in dc),
                                  worse=sum(d < 0 for d in dc))
    both = [m for m in common if "error" not in a[m] and "error" not in b[m]]
    dm = [b[m]["cov_mat_1.25"]["mat_r"] - a[m]["cov_mat_1.25"]["mat_r"] for m in both]  # MAT-R has no threshold
    out["MAT-R"] = dict(mean_se(dm), molecules=len(dm))
    for key, label in (("rel_median", "xTB dE median"), ("rel_lowest", "xTB dE lowest")):
        de = [b[m][key] - a[m][key] for m in both if a[m].get(key) is not None and b[m].get(key) is not None]
        if de:
            out[label] = dict(mean_se(de), molecules=len(de), better=sum(d < 0 for d in de),
                              worse=sum(d > 0 for d in de))
    return out


def _cov(r: dict, t: float) -> float:
    return 0.0 if "error" in r else r[f"cov_mat_{t}"]["cov_r"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="baseline: FILE.json:METHOD")
    p.add_argument("b", help="compared: FILE.json:METHOD")
    p.add_argument("--out", type=Path, default=None, help="write STEM.json and STEM.md too")
    args = p.parse_args()
    (name_a, a), (name_b, b) = side(args.a), side(args.b)
    res = {"a": name_a, "b": name_b, **compare(a, b)}
    if not res["molecules"]:
        sys.exit(f"{name_a} and {name_b} share no molecule")
    rows = [[f"COV-R {t} A", f"{100 * c['mean']:+.1f} +- {100 * c['se']:.1f} pts", f"{c['better']} / {c['worse']}"]
            for t in THRESHOLDS for c in [res[f"COV-R@{t}"]]]
    m = res["MAT-R"]
    rows.append(["MAT-R", f"{m['mean']:+.3f} +- {m['se']:.3f} A", f"({m['molecules']} molecules both finished)"])
    for label in ("xTB dE median", "xTB dE lowest"):
        if label in res:
            e = res[label]
            rows.append([f"{label} (kcal/mol)", f"{e['mean']:+.2f} +- {e['se']:.2f}", f"{e['better']} / {e['worse']}"])
    lines = [f"`{name_b}` minus `{name_a}` over {res['molecules']} molecules, paired by molecule (+- standard error "
             "over molecules).", "", *md_table(["metric", "B - A", "molecules B does better / worse"], rows)]
    if args.out:
        write_result(args.out, f"`{name_b}` against `{name_a}`, paired by molecule", res, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
