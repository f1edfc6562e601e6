"""Sampling time with and without ``se3mol.runtime.keep_freed_memory``, each in a fresh process.

    python -m benchmarks.speed.allocator [-n 30] [-k 10] [--oversample 1,2] [--precision float32,bfloat16]
        [--threads 2] [--repeats 2] [--out STEM]

For the first N QM9 test molecules (stereo-free SMILES), a child process that has done nothing else loads the
shipped score model and samples ceil(F K) conformers per molecule with ``ScoreSampler.sample``, as
``se3mol conformers`` does; the children alternate between the two allocator settings (``--repeats`` rounds),
so that a machine that slows down or speeds up meanwhile affects both alike. A process that first loaded QM9
(as ``benchmarks/conformers/conformers.py`` does) has raised glibc's mmap threshold by freeing large arrays, so
this must run in fresh processes to see what a user's ``se3mol conformers`` sees. Writes ``STEM.json`` and ``STEM.md``
(default ``benchmarks/speed/results/allocator``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from benchmarks._results import md_table, results_dir, write_result
from benchmarks.conformers.conformers import pick_molecules

RESULTS = results_dir(__file__)

CHILD = """
import json, sys, time
import torch
from rdkit import Chem
job = json.loads(sys.argv[1])
torch.set_num_threads(job["threads"])
if job["keep"]:
    from se3mol.runtime import keep_freed_memory
    assert keep_freed_memory()
from se3mol.conformers.sampler import SamplerSettings, ScoreSampler
sampler = ScoreSampler.load("conformers-clofnet-qm9")
settings = SamplerSettings(precision=job["precision"])
seconds = []
for smiles in job["smiles"]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    t0 = time.perf_counter()
    sampler.sample(mol, job["samples"], 0, settings)
    seconds.append(time.perf_counter() - t0)
print(json.dumps(seconds))
"""


def run_child(smiles: list[str], samples: int, precision: str, keep: bool, threads: int) -> list[float]:
    job = {"smiles": smiles, "samples": samples, "precision": precision, "keep": keep, "threads": threads}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--molecules", type=int, default=30)
    p.add_argument("-k", "--conformers", type=int, default=10)
    p.add_argument("--oversample", default="1,2", help="comma-separated factors F: ceil(F K) samples")
    p.add_argument("--precision", default="float32,bfloat16", help="comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="rounds of alternating children per setting")
    p.add_argument("--out", type=Path, default=RESULTS / "allocator")
    args = p.parse_args()
    molecules, _ = pick_molecules(args.molecules, stereo="smiles")
    smiles = [s for _, s, _ in molecules]
    rows = []
    for factor in [float(f) for f in args.oversample.split(",")]:
        samples = math.ceil(factor * args.conformers - 1e-9)
        for precision in args.precision.split(","):
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeats):
                for keep in (False, True):
                    times[keep].append(sum(run_child(smiles, samples, precision, keep, args.threads)) / len(smiles))
            row = {"samples": samples, "precision": precision,
                   "seconds_default": min(times[False]), "seconds_kept": min(times[True]),
                   "all_default": times[False], "all_kept": times[True]}
            row["speedup"] = row["seconds_default"] / row["seconds_kept"]
            rows.append(row)
            print(f"{samples} samples, {precision}: {row['seconds_default']:.3f} s -> {row['seconds_kept']:.3f} s "
                  f"per molecule ({row['speedup']:.2f}x)", file=sys.stderr)
    report = {"molecules": len(smiles), "threads": args.threads, "rows": rows}
    lines = [f"{args.threads} torch threads; each figure the best of {args.repeats} fresh processes (alternating), "
             "seconds per molecule for the sampler alone (no selection, no output).", "",
             *md_table(["samples", "precision", "glibc defaults (s)", "keep_freed_memory (s)", "speed-up"],
                       [[r["samples"], r["precision"], f"{r['seconds_default']:.3f}", f"{r['seconds_kept']:.3f}",
                         f"{r['speedup']:.2f}x"] for r in rows])]
    write_result(args.out, f"Sampling time with and without `keep_freed_memory`, {len(smiles)} QM9 test molecules",
                 report, lines)
    print("\n".join(lines), file=sys.stderr)

if __name__ == "__main__":
    main()
