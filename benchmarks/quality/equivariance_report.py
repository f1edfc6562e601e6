"""Equivariance errors of every registered family (fresh, default config) and every shipped property model.

    python -m benchmarks.quality.equivariance_report

Runs the check of ``se3mol check-equivariance`` (float64, the five built-in molecules of 3-14 atoms, three
random transformations of each kind) and writes the worst relative error per model, output kind and
transformation to ``benchmarks/quality/results/equivariance.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks._results import md_table, results_dir, write_result

RESULTS = results_dir(__file__)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from se3mol.equivariance import check, default_molecules, model_to_check
    from se3mol.graph import collate
    from se3mol.nn.registry import model_names
    from se3mol.pretrained import list_model_cards

    specs = model_names(include_controls=True)
    specs += [c["name"] for c in list_model_cards() if c.get("task", "properties") == "properties"]
    mols = default_molecules()
    rows = []
    for spec in specs:
        model = model_to_check(spec)
        report = check(model, collate(mols, model.graph), trials=3)
        for r in report.rows:
            rows.append({"model": spec, "output": r.output, "kind": r.kind, "transform": r.transform,
                         "max_rel_error": r.max_rel_error, "status": r.status})
        print(f"{spec}: {'pass' if report.passed else 'FAIL'}", file=sys.stderr, flush=True)
    transforms = ("rotation", "reflection", "translation", "permutation")
    keys = sorted({(r["model"], r["output"], r["kind"]) for r in rows}, key=lambda k: (specs.index(k[0]), k[1]))
    table = []
    for model, output, kind in keys:
        cells = []
        for t in transforms:
            r = next(x for x in rows if (x["model"], x["output"], x["transform"]) == (model, output, t))
            cell = f"{r['max_rel_error']:.1e}"
            cells.append(cell + (" n/e" if r["status"] == "not expected" else " FAIL" if r["status"] == "FAIL" else ""))
        table.append([model, f"{output} ({kind})", *cells])
    write_result(RESULTS / "equivariance",
                 "Equivariance: worst relative error, float64, 5 molecules of 3-14 atoms, 3 trials per kind",
                 {"tolerance": 1e-9, "rows": rows},
                 ["Tolerance 1e-9; 'n/e' = not expected: ClofNet is SE(3)- but not reflection-equivariant.", "",
                  *md_table(["model", "output (kind)", *transforms], table)])

if __name__ == "__main__":
    main()
