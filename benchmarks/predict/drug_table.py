"""``se3mol predict`` on a ChEMBL-style table of drug-like SMILES: rows in and out, status by reason, time, memory.

    python -m benchmarks.predict.drug_table                 # 2,000 rows; writes results/drug_table.{json,md}
    python -m benchmarks.predict.drug_table --rows 200 --no-write   # smoke run

Real users' tables are not clean: vendor and ChEMBL exports hold salts, hydrates and mixtures, charged
molecules, the odd polymer or peptide, elements no model was trained on, and broken SMILES. This builds such a
table from what can be installed (MOSES test SMILES, ``pip install --no-deps molsets``; a seeded sample), edits a
seeded fraction of its rows the way real tables differ from MOSES, and runs ``se3mol predict TABLE.csv`` with the
shipped default model as a subprocess:

- salts: ``.Cl`` (hydrochloride), ``.O.O`` (dihydrate), ``.CS(=O)(=O)O`` (mesylate), a carboxylic acid as its
  sodium salt (``[O-]`` + ``.[Na+]``);
- charged: a basic amine protonated with its chloride (``[NH+]`` ... ``.[Cl-]``);
- out of the model's elements: an aromatic H to iodine;
- size limits: a 20,000-carbon polymer row and a 200-carbon chain (600 atoms with H);
- broken: an unclosed ring.

It records rows in and out (every input row must come out once, in order), ``ok`` / ``error`` counts with the
errors grouped by reason, the notes (fragments removed), wall time, and the peak memory of the process
(``wait4`` rusage).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks._results import md_table, results_dir, write_result

RESULTS = results_dir(__file__)


def _edits() -> dict[str, str]:
    """Reaction SMARTS of the edits that need chemistry (the salts by string are in :func:`edit`)."""
    return {"sodium_salt": "[CX3:1](=[O:2])[OX2H1:3]>>[C:1](=[O:2])[O-:3]",
            "protonated_chloride": "[NX3;H1,H2;!$(N-C=[O,S,N]);!$(N-a);!$(N-S):1]>>[N+:1]",
            "iodo": "[cH:1]>>[c:1]I"}


#: The counter-ion a charged edit comes with, as it stands in a table.
COUNTER_IONS = {"sodium_salt": ".[Na+]", "protonated_chloride": ".[Cl-]", "iodo": ""}


def edit(smiles: str, kind: str) -> str | None:
    """``smiles`` edited as ``kind``, or ``None`` when the molecule has no group for it."""
    from rdkit import Chem
    from rdkit.Chem import rdChemReactions

    if kind in ("hydrochloride", "dihydrate", "mesylate"):
        return smiles + {"hydrochloride": ".Cl", "dihydrate": ".O.O", "mesylate": ".CS(=O)(=O)O"}[kind]
    if kind == "broken":
        return smiles.replace("1", "", 1) if "1" in smiles else None
    rxn = rdChemReactions.ReactionFromSmarts(_edits()[kind])
    mol = Chem.MolFromSmiles(smiles)
    products = rxn.RunReactants((mol,), maxProducts=1)
    if not products:
        return None
    product = products[0][0]
    try:
        Chem.SanitizeMol(product)
    except Exception:  # noqa: BLE001 - an edit RDKit cannot sanitise is skipped
        return None
    return Chem.MolToSmiles(product) + COUNTER_IONS[kind]


KINDS = {"hydrochloride": 0.05, "dihydrate": 0.02, "mesylate": 0.02, "sodium_salt": 0.04, "protonated_chloride": 0.04,
         "iodo": 0.02, "broken": 0.01}


def build_table(path: Path, rows: int, seed: int = 0) -> Counter:
    """Write the table; returns how many rows of each kind it has."""
    from se3mol.data.moses import moses_path, moses_smiles

    smiles = moses_smiles(moses_path("test"))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(smiles), size=rows - 2, replace=False)
    kinds: Counter = Counter()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["chembl_id", "smiles", "kind"])
        for k, i in enumerate(picked):
            s, kind = smiles[i], "plain"
            r = rng.random()
            for name, rate in KINDS.items():
                if r < rate:
                    edited = edit(s, name)
                    if edited is not None:
                        s, kind = edited, name
                    break
                r -= rate
            kinds[kind] += 1
            w.writerow([f"ROW{k:06d}", s, kind])
        w.writerow(["POLYMER", "C" * 20000, "polymer"])
        w.writerow(["LONGCHAIN", "C" * 200, "long_chain"])
        kinds.update(["polymer", "long_chain"])
    return kinds


def reason(error: str) -> str:
    """An error's kind: its message with the record's specifics (numbers, SMILES) taken out."""
    error = re.sub(r"^line \d+: ", "", error)
    error = re.sub(r"'[^']*'", "'...'", error)
    error = re.sub(r"\d+(\.\d+)?", "N", error)
    return error[:110]


def run(rows: int, seed: int, out_dir: Path) -> dict:
    table = out_dir / "table.csv"
    kinds = build_table(table, rows, seed)
    out = out_dir / "scores.csv"
    cmd = [sys.executable, "-m", "se3mol", "predict", str(table), "--id-column", "chembl_id", "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stderr = proc.stderr.read() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    with out.open() as f:
        got = list(csv.DictReader(f))
    with table.open() as f:
        given = list(csv.DictReader(f))
    statuses = Counter(r["status"] for r in got)
    reasons = Counter(reason(r["error"]) for r in got if r["status"] == "error")
    by_kind: dict[str, Counter] = {}
    for g, r in zip(given, got, strict=False):
        by_kind.setdefault(g["kind"], Counter())[r["status"]] += 1
    notes = Counter(reason(n) for r in got for n in (r.get("notes") or "").split("; ") if "fragment" in n)
    in_order = [g["chembl_id"] for g in given] == [r["id"] for r in got] and [int(r["index"]) for r in got] == list(
        range(len(given)))
    return {"rows_in": len(given), "rows_out": len(got), "in_order": in_order, "exit_code": code,
            "status": dict(statuses),
            "errors_by_reason": dict(reasons.most_common()), "status_by_kind": {k: dict(v) for k, v in by_kind.items()},
            "kinds": dict(kinds), "fragment_notes": dict(notes.most_common(8)), "wall_s": round(wall, 1),
            "rows_per_s": round(len(given) / wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "stderr_tail": stderr[-600:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print, do not write results/")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(a.rows, a.seed, Path(tmp))
    print(json.dumps(r, indent=1))
    if a.no_write:
        return
    lines = [f"{r['rows_in']} rows in, {r['rows_out']} rows out (in input order: {r['in_order']}), exit code "
             f"{r['exit_code']}; {r['wall_s']} s wall ({r['rows_per_s']} rows/s, 3D embedding included), peak "
             f"memory {r['peak_rss_mb']} MB. The default model, `qm9-egnn-all12`, knows H C N O F: rows with S, Cl, "
             "Br (most of MOSES) are errors by design; the table shows that each is an error row with its reason.",
             "", *md_table(["status", "rows"], sorted(r["status"].items())), "",
             *md_table(["row kind", "rows", "status"], [[k, r["kinds"][k], json.dumps(v)]
                                                         for k, v in sorted(r["status_by_kind"].items())]), "",
             *md_table(["error (specifics replaced by N and '...')", "rows"], r["errors_by_reason"].items()), "",
             *md_table(["fragment note", "rows"], r["fragment_notes"].items())]
    write_result(RESULTS / "drug_table", "predict on a ChEMBL-style table of drug-like SMILES", r, lines)


if __name__ == "__main__":
    main()
