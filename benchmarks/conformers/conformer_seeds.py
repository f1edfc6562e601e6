"""Two methods of ``benchmarks/conformers/conformers.py`` compared over several seeds, paired by molecule.

    python -m benchmarks.conformers.conformer_seeds benchmarks/conformers/results/conformers.json \\
        benchmarks/conformers/results/conformers_seed{1,2,3,4}.json --a "clofnet, oversample 1" --b clofnet

One run of 200 molecules moves COV-R by one or two points by the luck of its draw, so a difference between two
settings measured once is mostly noise. Given result files of several seeds (the same molecules in each) that
hold both methods (rows named as in their tables), this prints, for each seed, each method's COV-R and MAT-R,
and over the seeds the mean of each method and of the difference ``b - a``, per molecule averaged over the
seeds first, with its standard error over molecules. Writes ``STEM.{json,md}`` with ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks._results import read_result, write_result

KEYS = (("cov_r", "COV-R", 100.0, "%"), ("mat_r", "MAT-R mean", 1.0, " A"), ("cov_p", "COV-P", 100.0, "%"))


def rows_by_method(path: Path, method: str) -> dict[str, dict]:
    report = read_result(path)  # with its per-molecule lists
    for r in report["results"]:
        if r["method"] == method:
            return {m["id"]: m for m in r["molecules"]}
    names = ", ".join(repr(r["method"]) for r in report["results"])
    raise SystemExit(f"{path}: no method {method!r} (it has {names})")


def compare(paths: list[Path], a: str, b: str) -> dict:
    runs_a = [rows_by_method(p, a) for p in paths]
    runs_b = [rows_by_method(p, b) for p in paths]
    ids = sorted(set.intersection(*(set(r) for r in runs_a + runs_b)))
    if not ids:
        raise SystemExit("the files share no molecule scored by both methods")
    seeds = [json.loads(p.read_text()).get("seed") for p in paths]
    out = {"a": a, "b": b, "files": [str(p) for p in paths], "seeds": seeds, "n_molecules": len(ids),
           "per_seed": [], "mean": {}}
    for p, seed, ra, rb in zip(paths, seeds, runs_a, runs_b, strict=True):
        out["per_seed"].append({"file": str(p), "seed": seed, **{
            f"{key}_{side}": float(np.mean([r[i][key] for i in ids])) for key, *_ in KEYS
            for side, r in (("a", ra), ("b", rb))}})
    for key, *_ in KEYS:
        va = np.array([[r[i][key] for i in ids] for r in runs_a]).mean(0)  # per molecule, over seeds
        vb = np.array([[r[i][key] for i in ids] for r in runs_b]).mean(0)
        d = vb - va
        out["mean"][key] = {"a": float(va.mean()), "b": float(vb.mean()), "b_minus_a": float(d.mean()),
                            "se": float(d.std(ddof=1) / np.sqrt(len(d)))}
    return out


def markdown(res: dict) -> list[str]:
    lines = [f"{res['n_molecules']} molecules scored by both methods in every file.", "",
             "| seed | " + " | ".join(f"{name} {side}" for _, name, *_ in KEYS for side in ("a", "b")) + " |",
             "|---|" + "---|" * (2 * len(KEYS))]
    for s in res["per_seed"]:
        lines.append(f"| {s['seed']} | " + " | ".join(
            f"{scale * s[f'{key}_{side}']:.{1 if scale > 1 else 3}f}{unit}"
            for key, _, scale, unit in KEYS for side in ("a", "b")) + " |")
    lines += ["", f"a: `{res['a']}`, b: `{res['b']}`. Over the seeds (per molecule averaged over seeds first; "
              "the difference's standard error is over molecules):", ""]
    for key, name, scale, unit in KEYS:
        m = res["mean"][key]
        digits = 1 if scale > 1 else 3
        lines.append(f"- {name}: a {scale * m['a']:.{digits}f}{unit}, b {scale * m['b']:.{digits}f}{unit}, "
                     f"b - a {scale * m['b_minus_a']:+.{digits}f} +- {scale * m['se']:.{digits}f}{unit}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", type=Path, nargs="+",
                   help="results JSON of benchmarks/conformers/conformers.py, one per seed")
    p.add_argument("--a", required=True, help="method row name, e.g. 'clofnet, oversample 1'")
    p.add_argument("--b", required=True, help="method row name, e.g. clofnet")
    p.add_argument("--out", type=Path, default=None, help="write STEM.json and STEM.md")
    args = p.parse_args()
    res = compare(args.files, args.a, args.b)
    lines = markdown(res)
    print("\n".join(lines))
    if args.out:
        write_result(args.out, f"`{res['b']}` against `{res['a']}` over {len(res['files'])} seeds, paired by molecule",
                     res, lines)


if __name__ == "__main__":
    main()
