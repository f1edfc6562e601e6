"""GFN2-xTB labels of drug-like conformers, for pretraining a representation: built on CPU, in resumable chunks.

    python -m se3mol.data.xtb_labels build data/xtb-moses -n 20000            # MOSES train SMILES (molsets)
    python -m se3mol.data.xtb_labels build data/xtb-big --source big.smi -n 5000   # any SMILES file
    python -m se3mol.data.xtb_labels summary data/xtb-moses
    python -m se3mol.data.xtb_labels export data/xtb-moses data/xtb-big frames.extxyz   # for train --data --forces

No data set of drug-like molecules with quantum-chemical labels can be downloaded here, so this builds one from
what can be installed: SMILES (by default those of the MOSES train split, ~1.6M ZINC molecules of C N O S F Cl Br
H, from the PyPI package ``molsets``: ``pip install --no-deps molsets``) and GFN2-xTB through ``tblite``
(:mod:`se3mol.conformers.xtb`). For each molecule (:func:`label_molecule`):

1. **Variant.** MOSES has no P or I and no charged molecule, which real data has (ChEMBL: phosphates, iodo-arenes,
   protonated amines). A seeded fraction of molecules is edited by one of :data:`VARIANTS` (an aromatic H or
   halogen to I; a carboxylic acid or alcohol to a phosphonic acid or phosphate; a basic amine protonated; an acid
   deprotonated) when the molecule has the group, and its total charge follows. The record says which.
2. **Conformers.** ``conformers`` seeded ETKDGv3 embeddings; the first ``mmff`` of them minimised with MMFF94, the
   others left as ETKDG made them (a user's SMILES are embedded the same way, and their GFN2-xTB forces are not
   zero, which is what a force label needs).
3. **Labels.** One GFN2-xTB single point per conformer (gas phase, the molecule's total charge): energy (eV),
   forces (eV/A), HOMO and LUMO energies (eV), dipole vector (e A, as tblite reports it; origin-dependent for a
   charged molecule) and the atomic partial charges (e).
   A conformer whose SCF fails is dropped and counted; a molecule with none left is an error, kept with its
   reason.

Which molecules: a seeded permutation of the source's rows, taken in chunks of ``chunk`` molecules; ``-n`` takes
the first ``n`` of it, so a larger ``-n`` later extends the same set. Each chunk is written atomically as
``OUT/chunks/NNNNN.npz`` (arrays, float32) and ``NNNNN.json`` (per molecule: row, SMILES, variant, charge,
conformers, or the error), the JSON last: an interrupted build resumes at the first chunk without its JSON, and
parallel workers never collide. ``OUT/settings.json`` holds the settings a resumed build must share.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from se3mol.writers import atomic_open, atomic_write_text

__all__ = ["LabelSettings", "VARIANTS", "build", "export", "label_molecule", "read_chunks", "summary"]

#: Elements the pretraining data covers (and a pretrained representation knows).
ELEMENTS = (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53)
_EH_TO_EV = 27.211386245988
_BOHR = 0.529177210903  # Angstrom
#: Reaction SMARTS of each variant; the first match (in RDKit's order) is edited. Charges follow the product.
VARIANTS: dict[str, str] = {
    "iodo": "[cH:1]>>[c:1]I",
    "halogen_to_iodo": "[c:1][Cl,Br]>>[c:1]I",
    "phosphonic_acid": "[CX3:1](=[O:2])[OX2H1]>>[P:1](=[O:2])(O)O",
    "phosphate": "[CX4:1][OX2H1]>>[C:1]OP(=O)(O)O",
    "protonated_amine": "[NX3;H2,H1,H0;+0;!$(N-[a,#6]=[#7,#8,#16]);!$(N-a);!$(N-[S,P]);!$(N#*);!$(N=*):1]>>[N+:1]",
    "carboxylate": "[CX3:1](=[O:2])[OX2H1]>>[C:1](=[O:2])[O-]",
}


@dataclass
class LabelSettings:
    """How each molecule is labelled (see the module docstring for each step)."""

    conformers: int = 4
    mmff: int = 1
    chunk: int = 50
    seed: int = 0
    max_heavy_atoms: int = 60
    embed_timeout: int = 20  # seconds ETKDG may spend on one molecule
    #: Fraction of molecules given each variant (tried in this order; a molecule gets at most one).
    variant_rates: dict[str, float] = field(default_factory=lambda: {
        "halogen_to_iodo": 0.3, "iodo": 0.04, "phosphonic_acid": 0.3, "phosphate": 0.3, "protonated_amine": 0.3,
        "carboxylate": 0.3})


_IDENTITY = ("conformers", "mmff", "chunk", "seed", "max_heavy_atoms", "variant_rates", "source")


def source_smiles(source: str | None) -> tuple[str, list[str]]:
    """``(name, SMILES)`` of ``source``: a SMILES file, read as ``se3mol predict`` reads one
    (:func:`se3mol.io.smiles.smiles_lines`: the SMILES of each line without its name, comments and a header
    skipped, gzip told by its bytes), or the MOSES train split when ``None``."""
    if source is None:
        from se3mol.data.moses import moses_path, moses_smiles

        return "moses-train", moses_smiles(moses_path("train"))
    from se3mol.io.base import open_text
    from se3mol.io.smiles import smiles_lines

    with open_text(source) as lines:
        return str(Path(source)), [smiles for _, smiles, _ in smiles_lines(lines)]


def _variant(mol, row: int, settings: LabelSettings):
    """``(molecule, variant name)``: ``mol`` edited by the variant this row draws, or unchanged (``""``)."""
    from rdkit import Chem
    from rdkit.Chem import rdChemReactions

    rng = np.random.default_rng([settings.seed, row, 1])
    for name, rate in settings.variant_rates.items():
        if rng.random() >= rate:
            continue
        rxn = rdChemReactions.ReactionFromSmarts(VARIANTS[name])
        products = rxn.RunReactants((mol,), maxProducts=1)
        if not products:
            continue
        product = products[0][0]
        try:
            Chem.SanitizeMol(product)
        except Exception:  # noqa: BLE001 - an edit RDKit cannot sanitise is skipped, the next variant tried
            continue
        return Chem.MolFromSmiles(Chem.MolToSmiles(product)), name
    return mol, ""


def _homo_lumo(energies: np.ndarray, occupations: np.ndarray) -> tuple[float, float]:
    order = np.argsort(energies)
    e, occ = energies[order], occupations[order]
    n_occ = int(round(float(occ.sum()) / 2.0))  # closed shell: doubly occupied orbitals
    return float(e[n_occ - 1]), float(e[n_occ])


def label_molecule(smiles: str, row: int, settings: LabelSettings) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One molecule's record (row, SMILES, variant, charge, conformers kept) and arrays (``z [N]``, ``pos [C,N,3]``,
    ``forces [C,N,3]``, ``charges [C,N]``, ``energy [C]``, ``homo [C]``, ``lumo [C]``, ``dipole [C,3]``).

    Raises:
        ValueError: the SMILES does not parse, is too large or has an element outside :data:`ELEMENTS`, ETKDG
            embeds nothing, or every conformer's SCF fails.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers
    from tblite.interface import Calculator

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError("invalid SMILES")
    mol, variant = _variant(mol, row, settings)
    heavy = mol.GetNumHeavyAtoms()
    if heavy > settings.max_heavy_atoms:
        raise ValueError(f"{heavy} heavy atoms, more than {settings.max_heavy_atoms}")
    if len(Chem.GetMolFrags(mol)) > 1:
        raise ValueError("several fragments")
    mol = Chem.AddHs(mol)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    if not set(z.tolist()) <= set(ELEMENTS):
        raise ValueError(f"elements {sorted(set(z.tolist()) - set(ELEMENTS))} outside the covered ones")
    charge = Chem.GetFormalCharge(mol)
    params: Any = rdDistGeom.ETKDGv3()  # Any: RDKit's stubs type its settings (randomSeed, ...) wrongly
    params.randomSeed = int(np.random.default_rng([settings.seed, row, 2]).integers(2**31 - 1))
    params.timeout = settings.embed_timeout
    cids = list(rdDistGeom.EmbedMultipleConfs(mol, settings.conformers, params))
    if not cids:
        raise ValueError("ETKDG embedded no conformer")
    if settings.mmff and rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        for cid in cids[:settings.mmff]:
            rdForceFieldHelpers.MMFFOptimizeMolecule(mol, confId=cid, maxIters=500)
    n_electrons = int(z.sum()) - charge
    out: dict[str, list] = {k: [] for k in ("pos", "forces", "charges", "energy", "homo", "lumo", "dipole")}
    failed = 0
    for cid in cids:
        pos = mol.GetConformer(cid).GetPositions()
        calc = Calculator("GFN2-xTB", z, pos / _BOHR, charge=float(charge), uhf=n_electrons % 2)
        calc.set("verbosity", 0)
        try:
            res = calc.singlepoint()
        except RuntimeError:
            failed += 1
            continue
        homo, lumo = _homo_lumo(np.asarray(res.get("orbital-energies")), np.asarray(res.get("orbital-occupations")))
        out["pos"].append(pos)
        out["forces"].append(-np.asarray(res.get("gradient")) * _EH_TO_EV / _BOHR)
        out["charges"].append(np.asarray(res.get("charges")))
        out["energy"].append(float(res.get("energy")) * _EH_TO_EV)
        out["homo"].append(homo * _EH_TO_EV)
        out["lumo"].append(lumo * _EH_TO_EV)
        out["dipole"].append(np.asarray(res.get("dipole")) * _BOHR)  # e bohr -> e A
    if not out["energy"]:
        raise ValueError(f"GFN2-xTB failed on all {len(cids)} conformers")
    record = {"row": row, "smiles": smiles, "labelled_smiles": Chem.MolToSmiles(Chem.RemoveHs(mol)),
              "variant": variant, "charge": charge, "conformers": len(out["energy"]), "scf_failed": failed}
    arrays = {"z": z.astype(np.int8)}
    for k, v in out.items():
        arrays[k] = np.asarray(v, dtype=np.float64 if k == "energy" else np.float32)
    return record, arrays


def _chunk_paths(out: Path, k: int) -> tuple[Path, Path]:
    return out / "chunks" / f"{k:05d}.npz", out / "chunks" / f"{k:05d}.json"


def build_chunk(out: Path, k: int, molecules: Sequence[tuple[int, str]], settings: LabelSettings) -> dict:
    """Label ``molecules`` (``(row, SMILES)``) as chunk ``k``; write its arrays, then its JSON (atomically, in that
    order)."""
    t0 = time.perf_counter()
    records, parts = [], []
    for row, smi in molecules:
        try:
            rec, arrays = label_molecule(smi, int(row), settings)
        except Exception as exc:  # noqa: BLE001 - one molecule's failure is recorded, never the chunk's
            records.append({"row": int(row), "smiles": smi, "error": str(exc) or type(exc).__name__})
            continue
        records.append(rec)
        parts.append(arrays)
    npz, meta = _chunk_paths(out, k)
    packed = _pack(parts)
    with atomic_open(npz, "wb") as f:
        np.savez_compressed(f, **packed)  # type: ignore[arg-type]
    summary = {"chunk": k, "seconds": round(time.perf_counter() - t0, 1), "molecules": records}
    atomic_write_text(json.dumps(summary, indent=1) + "\n", meta)
    return summary


def _pack(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate molecules: atoms ``z [A]``; per conformer ``pos [sum C*N,3]`` etc., ``n_atoms [M]``,
    ``n_conformers [M]``; per-conformer scalars ``energy [C_total]``."""
    if not parts:
        return {"n_atoms": np.zeros(0, np.int32), "n_conformers": np.zeros(0, np.int32)}
    packed: dict[str, np.ndarray] = {
        "n_atoms": np.array([p["z"].shape[0] for p in parts], np.int32),
        "n_conformers": np.array([p["energy"].shape[0] for p in parts], np.int32),
        "z": np.concatenate([p["z"] for p in parts])}
    for key in ("pos", "forces", "charges"):
        packed[key] = np.concatenate([p[key].reshape(-1, *p[key].shape[2:]) for p in parts])
    for key in ("energy", "homo", "lumo", "dipole"):
        packed[key] = np.concatenate([p[key] for p in parts])
    return packed


def _check_settings(out: Path, settings: LabelSettings, source: str) -> None:
    path = out / "settings.json"
    mine = {**asdict(settings), "source": source}
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in _IDENTITY if old.get(k) != mine.get(k)]
        if changed:
            raise SystemExit(f"{out} was built with other settings ({', '.join(changed)}): use another directory")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(mine, indent=1) + "\n", path)


def build(out: str | Path, n: int, settings: LabelSettings, source: str | None = None, workers: int = 1,
          log: Any = sys.stderr) -> None:
    """Label the first ``n`` molecules of ``source``'s seeded permutation into ``out`` (chunks already written
    are kept: this resumes and extends)."""
    out = Path(out)
    name, smiles = source_smiles(source)
    _check_settings(out, settings, name)
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(settings.seed).permutation(len(smiles))[:n]
    todo = [k for k in range(-(-len(order) // settings.chunk)) if not _chunk_paths(out, k)[1].exists()]
    print(f"{name}: {len(order)} molecules in {-(-len(order) // settings.chunk)} chunks, {len(todo)} to build",
          file=log, flush=True)
    # Each job carries its own SMILES only: a worker process is sent one chunk, not the whole source.
    jobs = [(out, k, [(int(r), smiles[r]) for r in order[k * settings.chunk:(k + 1) * settings.chunk]], settings)
            for k in todo]
    done = 0
    # Always in spawned workers, even one, each started with OMP_NUM_THREADS=1 (libgomp reads it when it loads):
    # with two OpenMP threads GFN2-xTB's energies vary run to run in the last bits, and the calling process may
    # have OpenMP running already (torch). Spawned, not forked: a forked child of a process whose OpenMP threads
    # already ran deadlocks in tblite. Parallelism comes from workers, not threads.
    with _environ(OMP_NUM_THREADS="1"), \
            ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        for summ in pool.map(build_chunk, *zip(*jobs, strict=True)):
            _report(summ, log, done := done + 1, len(jobs))


@contextmanager
def _environ(**env: str) -> Iterator[None]:
    """Set environment variables for the processes started inside the block (and restore them after)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _report(summ: dict, log: Any, done: int, total: int) -> None:
    mols = summ["molecules"]
    ok = sum("error" not in m for m in mols)
    confs = sum(m.get("conformers", 0) for m in mols)
    print(f"chunk {summ['chunk']}: {ok}/{len(mols)} molecules, {confs} conformers, {summ['seconds']} s "
          f"({done}/{total})", file=log, flush=True)


def read_chunks(out: str | Path) -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
    """Every labelled molecule of a build, in chunk order: ``(record, arrays)`` as :func:`label_molecule` returns
    them (errors skipped)."""
    for meta in sorted((Path(out) / "chunks").glob("*.json")):
        summ = json.loads(meta.read_text())
        with np.load(meta.with_suffix(".npz")) as data:
            arrays = {k: data[k] for k in data.files}
        a = r = c = 0  # offsets: atoms, atom-conformer rows, conformers
        ok = [m for m in summ["molecules"] if "error" not in m]
        for rec, n_atoms, n_conf in zip(ok, arrays["n_atoms"], arrays["n_conformers"], strict=True):
            n_atoms, n_conf = int(n_atoms), int(n_conf)
            yield rec, {"z": arrays["z"][a:a + n_atoms].astype(np.int64),
                        **{k: arrays[k][r:r + n_conf * n_atoms].reshape(n_conf, n_atoms, *arrays[k].shape[1:])
                           for k in ("pos", "forces", "charges")},
                        **{k: arrays[k][c:c + n_conf] for k in ("energy", "homo", "lumo", "dipole")}}
            a, r, c = a + n_atoms, r + n_conf * n_atoms, c + n_conf
        if a != arrays["z"].shape[0]:
            raise ValueError(f"{meta}: its records and arrays disagree")


def summary(out: str | Path) -> dict[str, Any]:
    """Counts of a build: molecules labelled and failed (by reason), conformers, variants, elements, seconds."""
    counts: dict[str, Any] = {"molecules": 0, "failed": 0, "conformers": 0, "seconds": 0.0, "variants": {},
                              "errors": {}, "elements": {}, "charges": {}}
    for meta in sorted((Path(out) / "chunks").glob("*.json")):
        summ = json.loads(meta.read_text())
        counts["seconds"] += summ["seconds"]
        for m in summ["molecules"]:
            if "error" in m:
                counts["failed"] += 1
                reason = m["error"].split(",")[0]
                counts["errors"][reason] = counts["errors"].get(reason, 0) + 1
                continue
            counts["molecules"] += 1
            counts["conformers"] += m["conformers"]
            v = m["variant"] or "none"
            counts["variants"][v] = counts["variants"].get(v, 0) + 1
            counts["charges"][str(m["charge"])] = counts["charges"].get(str(m["charge"]), 0) + 1
    for _, arrays in read_chunks(out):
        for el in set(arrays["z"].tolist()):
            counts["elements"][str(el)] = counts["elements"].get(str(el), 0) + 1
    return counts


def export(builds: str | Path | Sequence[str | Path], path: str | Path, holdout: float = 0.02) -> int:
    """Write every labelled conformer of one or more builds as extxyz frames (``energy`` eV, ``homo``/``lumo``
    eV, ``dipole`` e A, ``charge`` in ``info``; ``forces`` eV/A and ``charges`` e per atom), for ``se3mol train
    --data``. Each frame's ``split`` (``train``, ``val`` or ``test``, for ``--split column:split``) is drawn per
    molecule from a hash of its labelled SMILES, ``holdout`` each for val and test: all conformers of a molecule,
    in whichever build, fall on one side. Returns the number of frames."""
    from ase import Atoms
    from ase.io import write

    frames = []
    for out in [builds] if isinstance(builds, str | Path) else builds:
        for rec, arrays in read_chunks(out):
            smiles = rec["labelled_smiles"]
            u = int(hashlib.sha256(smiles.encode()).hexdigest()[:12], 16) / 16**12  # uniform in [0, 1)
            split = "test" if u < holdout else ("val" if u < 2 * holdout else "train")
            for c in range(arrays["energy"].shape[0]):
                atoms = Atoms(numbers=arrays["z"], positions=arrays["pos"][c])
                atoms.info.update(name=f"{Path(out).name}-{rec['row']}-{c}", smiles=smiles, charge=rec["charge"],
                                  energy=float(arrays["energy"][c]), homo=float(arrays["homo"][c]),
                                  lumo=float(arrays["lumo"][c]), dipole=arrays["dipole"][c].astype(float), split=split)
                atoms.arrays["forces"] = arrays["forces"][c].astype(float)
                atoms.arrays["xtb_charges"] = arrays["charges"][c].astype(float)
                frames.append(atoms)
    with atomic_open(path, "w") as f:
        write(f, frames, format="extxyz")
    return len(frames)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m se3mol.data.xtb_labels", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="label molecules (resumes and extends an existing build)")
    b.add_argument("out")
    b.add_argument("-n", type=int, required=True, help="molecules of the seeded permutation to label")
    b.add_argument("--source", help="SMILES file (default: MOSES train from molsets)")
    b.add_argument("--workers", type=int, default=1)
    for f in ("conformers", "mmff", "chunk", "seed", "max_heavy_atoms"):
        b.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(LabelSettings, f))
    s = sub.add_parser("summary", help="counts of a build")
    s.add_argument("out")
    e = sub.add_parser("export", help="write one or more builds as one extxyz file")
    e.add_argument("out", nargs="+", help="build directories")
    e.add_argument("path")
    e.add_argument("--holdout", type=float, default=0.02, help="fraction of molecules each for val and test")
    a = ap.parse_args(argv)
    if a.command == "build":
        settings = LabelSettings(conformers=a.conformers, mmff=a.mmff, chunk=a.chunk, seed=a.seed,
                                 max_heavy_atoms=a.max_heavy_atoms)
        build(a.out, a.n, settings, a.source, a.workers)
    elif a.command == "summary":
        print(json.dumps(summary(a.out), indent=1))
    else:
        print(f"wrote {export(a.out, a.path, a.holdout)} frames to {a.path}")


if __name__ == "__main__":
    main()
