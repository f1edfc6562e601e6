"""What featurising a user's SMILES costs: RDKit's ETKDG and MMFF94 per molecule, and reading with 1 and N workers.

    python -m benchmarks.speed.featurise                 # 80 molecules of a MoleculeACE development set
    python -m benchmarks.speed.featurise --data FILE.csv --n 200 --workers 2

Own-data training embeds every SMILES in 3D before the first step (``se3mol.chem.embed_3d``: ETKDGv3, then MMFF94
for up to 2,000 iterations). This times the two halves on the first ``--n`` molecules of ``--data`` (a CSV with a
``smiles`` column; default: the first development set as ``benchmarks/accuracy/moleculeace.py`` writes it), then
``LabelledDataset.from_files`` on the same molecules, uncached, with 1 and with ``--workers`` processes
(``se3mol.io.read_records(workers=...)``). The load average is recorded: other jobs slow both.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from benchmarks._results import ROOT, md_table, results_dir, write_result

RESULTS = results_dir(__file__)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "runs" / "bench_moleculeace" / "CHEMBL2047_EC50" / "data.csv")
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

    from se3mol.data.files import LabelledDataset

    with a.data.open() as f:
        smiles = [r["smiles"] for r in csv.DictReader(f)][: a.n]
    etkdg = mmff = 0.0
    for s in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = 0
        t = time.perf_counter()
        rdDistGeom.EmbedMolecule(mol, params)
        etkdg += time.perf_counter() - t
        t = time.perf_counter()
        rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=2000)
        mmff += time.perf_counter() - t
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "mols.csv"
        table.write_text("smiles,y\n" + "".join(f"{s},0\n" for s in smiles))
        for workers in (1, a.workers):
            t = time.perf_counter()
            ds = LabelledDataset.from_files([table], ["y"], cache=False, workers=workers)
            rows.append({"workers": workers, "molecules": len(ds), "seconds": time.perf_counter() - t})
            print(rows[-1], flush=True)
    data = {"data": str(a.data), "n": len(smiles), "etkdg_ms": 1000 * etkdg / len(smiles),
            "mmff_ms": 1000 * mmff / len(smiles), "rows": rows}
    write_result(RESULTS / "featurise", "Featurising SMILES: ETKDG and MMFF94 per molecule, 1 and N workers", data, [
        f"{len(smiles)} molecules of {a.data.name}: ETKDGv3 {data['etkdg_ms']:.0f} ms and MMFF94 (up to 2,000 "
        f"iterations) {data['mmff_ms']:.0f} ms per molecule, one process.", "",
        *md_table(["workers", "molecules", "seconds", "molecules/s"],
                  [[r["workers"], r["molecules"], f"{r['seconds']:.1f}", f"{r['molecules'] / r['seconds']:.1f}"]
                   for r in rows])])


if __name__ == "__main__":
    main()
