"""``se3mol predict`` at scale: peak memory and molecules/s end to end, against pure model inference.

    python -m benchmarks.predict.predict_scale                        # 20,000 and 200,000 molecules, 1 torch thread
    python -m benchmarks.predict.predict_scale --sizes 2000 --quick   # smoke run, results not written

For each size, writes an SDF of QM9 molecules (a pool of distinct QM9 test-split molecules with their DFT
geometries and RDKit-perceived bonds, repeated with new titles until the file has that many records;
streamed to disk, never held in memory), then runs ``se3mol predict FILE -o out.csv --profile`` with the
shipped default model as a subprocess (SDF in, CSV out) and records

- wall time and molecules/s end to end (process start and model load included), and in steady state
  (the ``--profile`` wall time: first row requested to last row written);
- the time split that ``--profile`` reports (reading/featurising in the background thread, model,
  waiting for input, writing);
- peak RSS of the process (``wait4`` rusage) and its RSS sampled during the run, to show it stays flat.

Pure inference: the same pool of molecules, batched as ``predict`` batches them (``--batch-size``),
collated beforehand, model forward only, with the same number of torch threads. The ratio of end-to-end
time to pure inference time is what issue 6 asks to keep within 1.5x.

Writes ``benchmarks/predict/results/predict_scale.json`` and ``predict_scale.md`` (``--out`` another stem). Pure
inference runs every member of the default model, as ``predict`` does (an ensemble of 3 since 0.2.0; the
committed 200,000-molecule result predates it and ran one network).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks._qm9 import bonded_test_molecules
from benchmarks._results import ROOT, results_dir, write_result

RESULTS = results_dir(__file__)
TITLE = "`se3mol predict` at scale"


def molblock_pool(n: int) -> list[tuple[str, str]]:
    """``n`` distinct QM9 test molecules as (name, V2000 molblock with bonds), geometry as in QM9."""
    from rdkit import Chem

    # without the title line, which each copy gets anew
    return [(name, Chem.MolToMolBlock(mol, kekulize=True).split("\n", 1)[1])
            for name, mol in itertools.islice(bonded_test_molecules(), n)]


def write_sdf(path: Path, n: int, pool: list[tuple[str, str]]) -> None:
    """Stream ``n`` records cycling through ``pool`` to ``path``."""
    with path.open("w") as fh:
        for i in range(n):
            name, body = pool[i % len(pool)]
            fh.write(f"{name}_r{i}\n{body}$$$$\n")


def run_predict(sdf: Path, n: int, threads: int, batch_size: int, prefetch: int, sample_every: float = 2.0) -> dict:
    """``se3mol predict`` as a subprocess: wall time, rusage peak RSS, RSS samples, --profile split."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.csv"
        cmd = [sys.executable, "-m", "se3mol", "predict", str(sdf), "-o", str(out), "--profile",
               "--batch-size", str(batch_size), "--prefetch", str(prefetch)]
        err_path = Path(d) / "stderr.txt"
        samples: list[tuple[float, float]] = []
        with err_path.open("w") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
            done = threading.Event()

            def sample() -> None:
                status = Path(f"/proc/{proc.pid}/status")
                while not done.wait(sample_every):
                    try:
                        kb = int(re.search(r"VmRSS:\s+(\d+)", status.read_text())[1])
                    except (OSError, TypeError):
                        return
                    samples.append((round(time.perf_counter() - t0, 1), round(kb / 1024, 1)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            _, status, rusage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            done.set()
            proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = err_path.read_text()
        if proc.returncode not in (0, 3):
            raise RuntimeError(f"se3mol predict failed ({proc.returncode}):\n{stderr}")
        with out.open() as fh:
            header = fh.readline().rstrip("\n").split(",")
            status_col = header.index("status")
            rows = ok = 0
            for line in fh:
                rows += 1
                ok += line.split(",")[status_col] == "ok"
    if rows != n:
        raise RuntimeError(f"expected {n} rows, got {rows}")
    prof = parse_profile(stderr)
    return {"molecules": n, "rows_ok": ok, "exit_code": proc.returncode, "wall_s": round(wall, 2),
            "molecules_per_s_end_to_end": round(n / wall, 1),
            "molecules_per_s_steady": round(n / prof["wall_s"], 1),
            "startup_and_model_load_s": round(wall - prof["wall_s"], 2),
            "cpu_s": round(rusage.ru_utime + rusage.ru_stime, 2),  # both threads, start-up included
            "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1),  # Linux: kilobytes
            "rss_samples_s_mb": samples[:: max(1, len(samples) // 20)] + samples[-1:],
            "time_split_s": prof, "prefetch": prefetch, "batch_size": batch_size}


def parse_profile(stderr: str) -> dict:
    """The figures of ``se3mol predict --profile``'s summary."""
    num = r"([0-9.]+) s"
    pats = {"wall_s": rf"over {num} wall", "read_parse_s": rf"read\+parse {num}",
            "featurise_s": rf"featurise \(checks, bonds, graphs\) {num}", "model_s": rf"model {num}",
            "wait_for_input_s": rf"waiting for featurised input {num}", "write_s": rf"write {num}"}
    out = {}
    for k, p in pats.items():
        m = re.search(p, stderr)
        if m is None:
            raise RuntimeError(f"no {k} in the --profile output:\n{stderr}")
        out[k] = float(m[1])
    return out


def pure_inference(pool: list[tuple[str, str]], batch_size: int, threads: int, min_molecules: int) -> dict:
    """Model forward only, on the pool's molecules collated beforehand in batches of ``batch_size``."""
    from rdkit import Chem

    from se3mol.graph import collate
    from se3mol.io import molecule_from_rdkit
    from se3mol.pretrained import DEFAULT_MODEL, load_pretrained, resolve_checkpoints

    torch.set_num_threads(threads)
    models = [load_pretrained(path)[0].eval() for path in resolve_checkpoints(DEFAULT_MODEL)]  # every member
    mols = [molecule_from_rdkit(Chem.MolFromMolBlock(f"{name}\n{body}", removeHs=False)) for name, body in pool]
    graph = models[0].graph
    batches = [collate(mols[i:i + batch_size], graph) for i in range(0, len(mols), batch_size)]
    with torch.no_grad():
        for model in models:
            model(batches[0])  # warm-up
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while n < min_molecules:
            for b in batches:
                for model in models:
                    model.heads.stack(model(b))
                n += b.num_graphs
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    label = f"{DEFAULT_MODEL} ({len(models)} members)" if len(models) > 1 else f"{DEFAULT_MODEL} (one model)"
    return {"model": label, "molecules": n, "seconds": round(dt, 2),
            "molecules_per_s": round(n / dt, 1), "cpu_ms_per_molecule": round(1000 * cpu / n, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every measurement")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pool", type=int, default=2000, help="distinct QM9 molecules the file cycles through")
    ap.add_argument("--no-prefetch-size", type=int, default=20_000,
                    help="also run this size with --prefetch 0 (no overlap), for comparison; 0 to skip")
    ap.add_argument("--workdir", type=Path, default=None, help="where the SDF files go (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="smoke run; results are printed, not written")
    ap.add_argument("--out", type=Path, default=RESULTS / "predict_scale", help="results file stem")
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite predict_scale.md from predict_scale.json, measuring nothing")
    a = ap.parse_args()
    if a.markdown_only:
        res = json.loads(a.out.with_name(a.out.name + ".json").read_text())
        write_result(a.out, TITLE, res, markdown(res))
        return

    pool = molblock_pool(a.pool)
    torch.set_num_threads(a.threads)
    res: dict = {
        "threads": a.threads, "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "input": f"SDF, QM9 test-split molecules with DFT geometries and perceived bonds, {len(pool)} distinct, "
                 "repeated with new titles",
        "runs": [],
    }
    with tempfile.TemporaryDirectory(dir=a.workdir) as d:
        plan = [(n, 2) for n in sorted(a.sizes)]
        if a.no_prefetch_size:
            plan.insert(0, (a.no_prefetch_size, 0))
        for n, prefetch in plan:
            sdf = Path(d) / f"qm9x{n}.sdf"
            if not sdf.exists():
                write_sdf(sdf, n, pool)
            # Side by side: the load of this shared machine changes over minutes, so pure inference is measured
            # right before each run, not once for all.
            pure = pure_inference(pool, a.batch_size, a.threads, min_molecules=max(a.pool, 4000))
            run = {"file_mb": round(sdf.stat().st_size / 2**20, 1),
                   **run_predict(sdf, n, a.threads, a.batch_size, prefetch), "pure_inference": pure}
            run["end_to_end_over_pure_inference"] = round(
                pure["molecules_per_s"] / run["molecules_per_s_end_to_end"], 2)
            run["steady_over_pure_inference"] = round(pure["molecules_per_s"] / run["molecules_per_s_steady"], 2)
            # CPU time is far less sensitive than wall time to other jobs on the machine.
            run["cpu_ms_per_molecule"] = round(1000 * run["cpu_s"] / n, 3)
            run["cpu_over_pure_inference_cpu"] = round(run["cpu_ms_per_molecule"] / pure["cpu_ms_per_molecule"], 2)
            res["runs"].append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "rss_samples_s_mb"}), flush=True)
            if not a.quick and prefetch:
                save(res, a.out)  # after every run: a long benchmark cut short still leaves its measurements


def save(res: dict, out: Path) -> None:
    """Add the extrapolation and write the JSON and markdown results."""
    big = max((r for r in res["runs"] if r["prefetch"]), key=lambda r: r["molecules"])
    res["extrapolation_1M"] = {
        "basis": f"steady-state rate and start-up of the {big['molecules']}-molecule run; peak RSS does not "
                 "grow with input size (compare the runs), so it is taken as is",
        "hours": round((1_000_000 / big["molecules_per_s_steady"] + big["startup_and_model_load_s"]) / 3600, 2),
        "peak_rss_mb": big["peak_rss_mb"],
    }
    res["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(out, TITLE, res, markdown(res))


def markdown(res: dict) -> list[str]:
    """The tables and notes below the header, from the JSON (``--markdown-only`` reads it back)."""
    m = res.get("machine", {})  # results written before the shared writer kept threads and loads in "machine"
    threads = res.get("threads", m.get("torch_threads"))
    load = res.get("load_average") or {"start": m.get("load_average_at_start"), "end": m.get("load_average_at_end")}
    lines = [
        f"{threads} torch thread(s); load average "
        f"{load['start']} at the start and {load['end']} at the end (1, 5, 15 min). "
        "Other jobs (a training run of another agent) share these 2 cores, so absolute rates are lower bounds "
        "and vary between runs; the background featurising thread competes with them for the second core.", "",
        f"Input: {res['input']}. Model: the shipped default `{res['runs'][0]['pure_inference']['model']}`. "
        "Output: CSV to a file (`-o`). Each "
        "run is a fresh `python -m se3mol predict FILE -o out.csv --profile` process.", "",
        "| molecules | file | prefetch | wall (s) | mol/s end to end | mol/s steady | start-up + model load (s) "
        "| peak RSS (MB) | read+parse (s) | featurise (s) | model (s) | model waiting for input (s) | write (s) "
        "| pure inference mol/s (just before) | end-to-end time / pure inference time | steady / pure "
        "| CPU ms/molecule (predict, both threads) | CPU ms/molecule (pure inference) | CPU ratio |",
        "| " + " | ".join(["---"] * 19) + " |",
    ]
    for r in res["runs"]:
        t = r["time_split_s"]
        lines.append(
            f"| {r['molecules']:,} | {r['file_mb']} MB | {r['prefetch']} | {r['wall_s']} | "
            f"{r['molecules_per_s_end_to_end']} | {r['molecules_per_s_steady']} | {r['startup_and_model_load_s']} | "
            f"{r['peak_rss_mb']} | {t['read_parse_s']} | {t['featurise_s']} | {t['model_s']} | "
            f"{t['wait_for_input_s']} | {t['write_s']} | {r['pure_inference']['molecules_per_s']} | "
            f"{r['end_to_end_over_pure_inference']} | {r['steady_over_pure_inference']} | "
            f"{r['cpu_ms_per_molecule']} | {r['pure_inference']['cpu_ms_per_molecule']} | "
            f"{r['cpu_over_pure_inference_cpu']} |")
    e = res["extrapolation_1M"]
    big = max((r for r in res["runs"] if r["prefetch"]), key=lambda r: r["molecules"])
    lines += [
        "", "Pure inference: model forward only, on pre-collated batches of the same molecules (same batch size, "
        "same threads), measured in the benchmark process right before each run. `steady` excludes process "
        "start-up and model loading (the `--profile` wall time). Wall-time ratios move with the load of the "
        "machine between the two measurements; the CPU-time ratio (all CPU the `predict` process used, both "
        "threads, start-up included, per molecule, over the CPU per molecule of pure inference) hardly does, "
        "and is the total work end to end relative to the model alone.", "",
        "Read+parse and featurise run in the background thread (prefetch 2) and overlap with the model; "
        "`model waiting for input` is the part of featurisation the overlap did not hide. With prefetch 0 "
        "everything runs in one thread, one step after the other.", "",
        "How to read the split: the model hardly ever waits for input (the thread keeps up), but the `model` "
        "time inside `predict` is longer than pure inference of the same molecules. The two threads share "
        "Python's GIL: RDKit's molfile parser holds it while it runs, and EGNN on QM9-sized molecules spends "
        "much of its time in Python-level dispatch of small torch operations, which needs the GIL too. So "
        "featurisation is hidden only in part, and the rest shows up as a slower model thread. A worker "
        "process instead of a thread would remove that, at the price of a second copy of the interpreter "
        "(and, on this machine, of competing with the other jobs for the second core).", "",
        f"RSS during the {big['molecules']:,}-molecule run, sampled (s, MB): "
        + ", ".join(f"{t}: {mb}" for t, mb in big["rss_samples_s_mb"]), "",
        f"Extrapolation to 1,000,000 molecules (not measured): {e['hours']} h at the steady rate of the "
        f"{big['molecules']:,}-molecule run, peak RSS {e['peak_rss_mb']} MB ({e['basis']}).", "",
    ]
    return lines


if __name__ == "__main__":
    main()
