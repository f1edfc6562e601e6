"""Drug-like reference conformer ensembles: MOSES SMILES -> ETKDG pools -> GFN2-xTB minima, cached and resumable.

    python -m se3mol.conformers.drugs build data/drugs/test --split test -n 100
    python -m se3mol.conformers.drugs build data/drugs/train --split train -n 2000 --workers 2
    python -m se3mol.conformers.drugs summary data/drugs/test
    python -m se3mol.conformers.drugs export data/drugs/train drugs-train.sdf   # for se3mol train --dataset
        [--exclude data/drugs/val]                                               # held-out molecules

GEOM-Drugs (Axelrod and Gomez-Bombarelli 2022) cannot be downloaded here, so this builds its like from what can
be installed: the SMILES of MOSES (Polykovskiy et al. 2020; ~1.9M ZINC molecules of elements C N O S F Cl Br H,
split into train and test files, shipped in the PyPI package ``molsets``: ``pip install --no-deps molsets``) and
GFN2-xTB, the method of GEOM's CREST ensembles, through ``tblite`` (:mod:`se3mol.conformers.xtb`). For each
molecule (:func:`build_ensemble`):

1. Stereo the SMILES leaves open (MOSES SMILES carry none) is fixed to one stereoisomer, the first of RDKit's
   enumeration: an ensemble is of one compound, and the SMILES written with it says which.
2. ``pool`` ETKDGv3 embeddings, each minimised with MMFF94; those within ``mmff_window`` kcal/mol of the lowest
   and ``rmsd`` Angstrom apart (heavy-atom best RMSD) are kept, at most ``keep``, lowest first.
3. Each is minimised with GFN2-xTB; a minimum that tore a bond, pushed atoms together or inverted a specified
   stereo element (:class:`~se3mol.conformers.checks.ConformerChecks`) is dropped.
4. The minima within ``window`` kcal/mol (GFN2-xTB) of the lowest, deduplicated at ``rmsd`` Angstrom keeping the
   lower, sorted by energy, with Boltzmann weights at 298.15 K, are the molecule's ensemble.

Which molecules: a seeded permutation of the split's rows; ``-n`` takes the first ``n`` of it, so a larger ``-n``
later extends the same set. The test split's ensembles are the conformer benchmark's set and are never
trained on (MOSES's train and test files share no molecule).

Output, one file per molecule, each written atomically, so an interrupted build resumes where it stopped and
parallel workers never collide: ``OUT/settings.json``, ``OUT/molecules/<row>.sdf`` (the ensemble, SD properties
below) or ``OUT/molecules/<row>.error.json`` (why there is none: a failure is kept, never dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

from se3mol.chem import conformer_positions, rdkit_messages, with_conformers
from se3mol.conformers.checks import ConformerChecks
from se3mol.conformers.inputs import molecule_from_smiles
from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers
from se3mol.conformers.xtb import EH_TO_KCAL, XTB_METHOD, require_tblite, xtb_optimise
from se3mol.data.moses import moses_path, moses_smiles
from se3mol.writers import SDFWriter, atomic_open, atomic_write_text

__all__ = ["BuildSettings", "build", "build_ensemble", "export", "fix_stereo", "moses_smiles", "read_ensembles",
           "summary"]

#: kT at 298.15 K in kcal/mol, for Boltzmann weights.
KT_KCAL = 0.0019872041 * 298.15
#: Settings a resumed build must share with the build it resumes (the rest, e.g. workers, may change).
_IDENTITY = ("split", "source", "seed", "pool", "keep", "mmff_window", "window", "rmsd", "method")


@dataclass
class BuildSettings:
    """How one molecule's ensemble is built (see the module docstring for each step)."""

    pool: int = 30
    keep: int = 12
    mmff_window: float = 15.0
    window: float = 6.0
    rmsd: float = 0.5
    method: str = XTB_METHOD


def fix_stereo(smiles: str) -> str:
    """``smiles`` with every stereo element it leaves open set, to the first stereoisomer RDKit enumerates.

    >>> fix_stereo("CC(O)CC")
    'CC[C@@H](C)O'
    >>> fix_stereo("C[C@H](O)CC")
    'CC[C@H](C)O'
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    options = StereoEnumerationOptions(onlyUnassigned=True, unique=True, tryEmbedding=False, maxIsomers=0)
    isomers = sorted(Chem.MolToSmiles(m) for m in EnumerateStereoisomers(mol, options=options))
    return isomers[0] if isomers else Chem.MolToSmiles(mol)


def _dedupe(mol: Chem.Mol, order: Sequence[int], rmsd: float, keep: int | None = None) -> list[int]:
    """Conformer indices in ``order`` (best first), dropping any within ``rmsd`` A of one kept before it."""
    confs = split_conformers(mol)
    kept: list[int] = []
    for i in order:
        if kept:
            d, _ = heavy_atom_rmsd_matrix([confs[i]], [confs[j] for j in kept])
            if d.min() < rmsd:
                continue
        kept.append(i)
        if keep is not None and len(kept) == keep:
            break
    return kept


def build_ensemble(smiles: str, settings: BuildSettings, seed: int) -> tuple[Chem.Mol, dict]:
    """One molecule's GFN2-xTB ensemble: the molecule (explicit H, one conformer per member, lowest energy first)
    and a record of what was done (``energies_eh``, ``rel_kcal``, ``weights``, counts per step, seconds).

    Raises:
        ValueError: the SMILES does not parse, ETKDG embeds nothing, MMFF94 has no parameters, or no GFN2-xTB
            minimum survives.
    """
    t0 = time.perf_counter()
    isomeric = fix_stereo(smiles)
    mol = molecule_from_smiles(isomeric)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed  # type: ignore[assignment]
    params.numThreads = 1  # type: ignore[assignment]
    with rdkit_messages():
        cids = list(rdDistGeom.EmbedMultipleConfs(mol, settings.pool, params))
    if not cids:
        raise ValueError("ETKDG embedded no conformer")
    with rdkit_messages():
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(Chem.Mol(mol))
    if props is None:
        raise ValueError("MMFF94 has no parameters for this molecule")
    with rdkit_messages():
        mmff = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000)
    e_mmff = np.array([e for _, e in mmff])
    flawed = ConformerChecks.of(mol).flawed(conformer_positions(mol))
    order = [int(i) for i in np.argsort(e_mmff) if not flawed[i] and e_mmff[i] - e_mmff.min() <= settings.mmff_window]
    starts = _dedupe(mol, order, settings.rmsd, settings.keep)

    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    charge = Chem.GetFormalCharge(mol)
    pos0 = conformer_positions(mol)
    minima, energies, unconverged = [], [], 0
    for i in starts:
        out = xtb_optimise(z, pos0[i], charge)
        unconverged += not out.converged
        minima.append(out.positions)
        energies.append(out.energy_after)
    pos = np.stack(minima)
    energies_eh = np.array(energies)
    bad = ConformerChecks.of(mol).flawed(pos)
    if bad.all():
        raise ValueError(f"every GFN2-xTB minimum of {len(starts)} tore a bond, clashed or inverted stereo")
    rel = (energies_eh - energies_eh[~bad].min()) * EH_TO_KCAL
    order = [int(i) for i in np.argsort(energies_eh) if not bad[i] and rel[i] <= settings.window]
    members = _dedupe(with_conformers(mol, pos), order, settings.rmsd)
    out_mol = with_conformers(mol, pos[members])
    rel_m = rel[members]
    w = np.exp(-rel_m / KT_KCAL)
    info = {
        "smiles": isomeric, "source_smiles": smiles, "seed": seed,
        "embedded": len(cids), "xtb_starts": len(starts), "xtb_unconverged": int(unconverged),
        "xtb_rejected": int(bad.sum()), "members": len(members),
        "energies_eh": energies_eh[members].tolist(), "rel_kcal": rel_m.tolist(), "weights": (w / w.sum()).tolist(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return out_mol, info


# --------------------------------------------------------------------------------------------------------
# The build: a fixed selection of rows, one file per molecule, resumable, parallel over processes
# --------------------------------------------------------------------------------------------------------


def _write_ensemble(path: Path, mol: Chem.Mol, info: dict, row: int) -> None:
    with SDFWriter(path) as w:  # atomic: a temporary file renamed into place when complete
        for k, conf in enumerate(mol.GetConformers()):
            w.write(mol, conf.GetId(), f"moses-{row} conf {k + 1}",
                    {"row": row, "smiles": info["smiles"], "source_smiles": info["source_smiles"],
                     "conformer": k + 1, "n_conformers": info["members"], "method": XTB_METHOD,
                     "xtb_energy_eh": f"{info['energies_eh'][k]:.8f}",
                     "rel_energy_kcal_mol": f"{info['rel_kcal'][k]:.4f}",
                     "boltzmann_weight": f"{info['weights'][k]:.6f}"})


def _work(task: tuple[int, str, dict, int, str]) -> tuple[int, str, float]:
    """Build one molecule's ensemble in a worker process and write its file; ``(row, status, seconds)``."""
    row, smiles, settings, seed, out = task
    folder = Path(out) / "molecules"
    t0 = time.perf_counter()
    try:
        mol, info = build_ensemble(smiles, BuildSettings(**settings), seed)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded per molecule, the build goes on
        seconds = round(time.perf_counter() - t0, 2)
        record = {"row": row, "smiles": smiles, "error": f"{type(exc).__name__}: {exc}", "seconds": seconds}
        atomic_write_text(json.dumps(record) + "\n", folder / f"{row}.error.json")
        return row, "error", seconds
    info["row"] = row
    _write_ensemble(folder / f"{row}.sdf", mol, info, row)
    atomic_write_text(json.dumps(info) + "\n", folder / f"{row}.json")
    return row, "ok", info["seconds"]


def selection(n_rows: int, seed: int, n: int) -> list[int]:
    """The first ``n`` rows of the build's seeded permutation of ``n_rows`` rows."""
    return np.random.default_rng(seed).permutation(n_rows)[:n].tolist()


def _done(out: Path) -> set[int]:
    folder = out / "molecules"
    return {int(p.name.split(".")[0]) for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith(".")}


def build(out: str | Path, split: str = "test", n: int = 100, source: str | Path | None = None,
          settings: BuildSettings | None = None, seed: int = 0, workers: int = 1,
          log=lambda msg: print(msg, flush=True)) -> dict[str, int]:
    """Build (or resume) the ensembles of the first ``n`` selected molecules of ``split`` into ``out``.

    Returns counts: ``done`` before this call, ``built`` and ``failed`` by it.

    Raises:
        ValueError: ``out`` was built with other settings.
    """
    require_tblite()
    settings = settings or BuildSettings()
    out = Path(out)
    (out / "molecules").mkdir(parents=True, exist_ok=True)
    src = Path(source) if source is not None else moses_path(split)
    identity = {"split": split, "source": src.name, "seed": seed, **asdict(settings)}
    stored = out / "settings.json"
    if stored.exists():
        old = json.loads(stored.read_text())
        changed = [k for k in _IDENTITY if old.get(k) != identity.get(k)]
        if changed:
            was = ", ".join(f"{k}: {old.get(k)!r}" for k in changed)
            raise ValueError(f"{out} was built with other settings ({was}); build into another folder")
    atomic_write_text(json.dumps({**identity, "n": n}, indent=2) + "\n", stored)

    smiles = moses_smiles(src)
    rows = selection(len(smiles), seed, n)
    done = _done(out)
    todo = [(r, smiles[r], asdict(settings), seed + r, str(out)) for r in rows if r not in done]
    log(f"{len(rows)} molecules selected from {src} ({len(smiles):,} rows): {len(rows) - len(todo)} done, "
        f"{len(todo)} to build with {workers} worker(s)")
    counts = {"done": len(rows) - len(todo), "built": 0, "failed": 0}
    t0 = time.perf_counter()

    def report(result: tuple[int, str, float]) -> None:
        row, status, seconds = result
        counts["built" if status == "ok" else "failed"] += 1
        k = counts["built"] + counts["failed"]
        log(f"[{k}/{len(todo)}] row {row}: {status} in {seconds:.1f} s ({time.perf_counter() - t0:.0f} s elapsed)")

    if workers <= 1:
        for task in todo:
            report(_work(task))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(_work, todo, chunksize=1):
                report(result)
    return counts


def read_ensembles(out: str | Path, rows: Sequence[int] | None = None) -> Iterator[tuple[int, dict, Chem.Mol]]:
    """``(row, info, molecule with one conformer per member)`` for every ensemble built in ``out``, by row."""
    folder = Path(out) / "molecules"
    wanted = sorted(int(p.stem) for p in folder.glob("*.sdf")) if rows is None else rows
    for row in wanted:
        path = folder / f"{row}.sdf"
        if not path.exists():
            continue
        info = json.loads((folder / f"{row}.json").read_text())
        mols = [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]
        mol = Chem.Mol(mols[0])
        mol.RemoveAllConformers()
        for m in mols:
            mol.AddConformer(Chem.Conformer(m.GetConformer()), assignId=True)
        yield row, info, mol


def export(out: str | Path, path: str | Path, exclude: Sequence[str | Path] = ()) -> tuple[int, int]:
    """Every ensemble of a build in one SD file (atomically), by row, for ``se3mol train --task conformers
    --dataset FILE`` (which splits by molecule). ``exclude``: builds whose molecules (by SMILES, so a build of
    either split) are left out, to hold them out of training. Returns (conformers written, molecules left out)."""
    folder = Path(out) / "molecules"
    rows = sorted(int(p.stem) for p in folder.glob("*.sdf"))
    if not rows:
        raise ValueError(f"no ensembles in {out}")
    held_out = set()
    for other in exclude:
        infos = list((Path(other) / "molecules").glob("*.json"))
        if not infos:
            raise ValueError(f"--exclude {other}: no molecules there (expected a build folder)")
        held_out |= {json.loads(p.read_text())["smiles"] for p in infos}
    count = skipped = 0
    with atomic_open(path) as f:
        for row in rows:
            if held_out and json.loads((folder / f"{row}.json").read_text())["smiles"] in held_out:
                skipped += 1
                continue
            text = (folder / f"{row}.sdf").read_text()
            count += text.count("$$$$")
            f.write(text)
    return count, skipped


def summary(out: str | Path) -> dict[str, float]:
    """Counts and sizes of a build: molecules built and failed, conformers per ensemble, atoms, seconds."""
    folder = Path(out) / "molecules"
    infos = [json.loads(p.read_text()) for p in folder.glob("*.json") if not p.name.endswith(".error.json")]
    errors = [json.loads(p.read_text()) for p in folder.glob("*.error.json")]
    members = [i["members"] for i in infos]
    result: dict[str, float] = {"built": len(infos), "failed": len(errors)}
    if infos:
        result.update({"conformers": int(sum(members)), "conformers_mean": float(np.mean(members)),
                       "conformers_max": int(max(members)),
                       "seconds_mean": float(np.mean([i["seconds"] for i in infos])),
                       "seconds_median": float(np.median([i["seconds"] for i in infos]))})
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m se3mol.conformers.drugs", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build or resume ensembles")
    b.add_argument("out", type=Path)
    b.add_argument("--split", choices=("train", "test"), default="test")
    b.add_argument("-n", type=int, default=100, help="molecules (the first n of the seeded selection)")
    b.add_argument("--source", type=Path, default=None, help="SMILES file instead of MOSES's (one per line)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=1)
    defaults = BuildSettings()
    for name in ("pool", "keep"):
        b.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    for name in ("mmff_window", "window", "rmsd"):
        b.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=getattr(defaults, name))
    s = sub.add_parser("summary", help="counts and sizes of a build")
    s.add_argument("out", type=Path)
    e = sub.add_parser("export", help="every ensemble in one SD file, for se3mol train --task conformers")
    e.add_argument("out", type=Path)
    e.add_argument("file", type=Path)
    e.add_argument("--exclude", type=Path, action="append", default=[], metavar="BUILD",
                   help="leave out the molecules of this build (held out for validation); repeatable")
    args = p.parse_args(argv)
    try:
        if args.command == "export":
            written, skipped = export(args.out, args.file, args.exclude)
            print(f"{written} conformers written to {args.file}"
                  + (f" ({skipped} molecules left out: in {', '.join(map(str, args.exclude))})" if skipped else ""))
            return 0
        if args.command == "summary":
            print(json.dumps(summary(args.out), indent=2))
            return 0
        settings = BuildSettings(pool=args.pool, keep=args.keep, mmff_window=args.mmff_window, window=args.window,
                                 rmsd=args.rmsd)
        counts = build(args.out, args.split, args.n, args.source, settings, args.seed, args.workers)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**counts, **summary(args.out)}, indent=2))
    return 0 if not counts["failed"] else 3


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
