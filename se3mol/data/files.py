"""Your own data: labelled molecules from SDF fields, extxyz info keys, CSV columns or a DataFrame.

A :class:`LabelledDataset` is molecules (packed as :class:`~se3mol.data.qm9.PackedMolecules`), a label
table ``y [M,T]`` with NaN where a label is missing, the :class:`~se3mol.targets.Target` specs that
give each column its name, unit and pooling, and a report of every record that was skipped or lost a
label, with the reason. QM9 is the other implementation of the same interface (``batch``,
``target_values``, ``counts``, ``z``): the trainer does not know which one it has.

Reading never stops at a bad record. A record that cannot be read, has an element the model cannot take
(or a charge, when fine-tuning a model that takes neutral molecules only), repeats an earlier id, or has no
usable label is skipped; charged molecules are kept with their total charge, a model input; a record that lacks one
label keeps its others (multi-target data with gaps trains as it is). Everything skipped or missing is
in :attr:`LabelledDataset.report`, which ``se3mol train`` writes to ``data_report.csv``.

Featurised files are cached in the user cache directory, keyed by a checksum of the files and of the
reading settings, so a CSV of SMILES is embedded in 3D (RDKit ETKDG+MMFF, seeded) once.

>>> import pandas as pd
>>> df = pd.DataFrame({"smiles": ["CCO", "CC", "C"], "y": [1.0, None, 3.0], "z": [0.5, 0.1, None]})
>>> ds = LabelledDataset.from_dataframe(df, ["y:kcal/mol", "z"])
>>> len(ds), ds.targets[0].column, ds.label_counts()
(3, 'y_kcal_mol', {'y': 2, 'z': 2})
>>> [r["reason"] for r in ds.report]
["missing label for target 'y'", "missing label for target 'z'"]
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from se3mol import limits
from se3mol.data.qm9 import PackedMolecules, cache_dir
from se3mol.graph import Batch, GraphConfig
from se3mol.targets import Target, parse_target_spec
from se3mol.writers import atomic_open, atomic_write_text

_log = logging.getLogger(__name__)
#: Seconds between progress messages while files are featurised (3D embedding of SMILES can take minutes).
PROGRESS_EVERY = 5.0
CACHE_FORMAT = 4  # 2: conversions reported, SMILES embeddings counted; 3: charged molecules kept; 4: chirality fallback
#: Labels further than this many robust standard deviations from their target's median are dropped (reported).
OUTLIER_MAD = 10.0
#: Fewest usable molecules a training run accepts (at least 8 to train on, one each to validate and test).
MIN_MOLECULES = 10

REPORT_COLUMNS = ("index", "id", "source", "status", "reason")
#: Notes that say a record was changed on the way in; such a record is listed in the report as "converted".
_CONVERSIONS = ("re-embedded in 3D", "hydrogen(s) missing", "fragments (salt", "neutralised")


def _as_targets(targets: Sequence[str | Target]) -> list[Target]:
    out = [t if isinstance(t, Target) else parse_target_spec(t) for t in targets]
    if not out:
        raise ValueError("give at least one target (--target NAME[:UNIT]) to learn")
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ValueError(f"target given twice: {names}")
    return out


def _label(value: Any) -> tuple[float, str | None]:
    """A label as a float (NaN when missing) and why it is unusable, if it is."""
    if value is None:
        return math.nan, "missing"
    if isinstance(value, bool):
        return math.nan, f"non-numeric label {value!r}"
    if isinstance(value, int | float):
        v = float(value)
    else:
        text = str(value).strip()
        if text.lower() in ("", "na", "n/a", "nan", "null", "none"):
            return math.nan, "missing"
        try:
            v = float(text)
        except ValueError:
            return math.nan, f"non-numeric label {text[:40]!r}"
    if math.isnan(v):
        return math.nan, "missing"
    if not math.isfinite(v):
        return math.nan, f"non-finite label {v!r}"
    return v, None


@dataclass(kw_only=True)
class LabelledDataset(PackedMolecules):
    """Labelled molecules, ready to batch (see the module docstring).

    Attributes:
        y: labels in the targets' units ``[M,T]`` (float64), NaN where missing.
        targets: one :class:`Target` per column of ``y``.
        ids: record ids, ``M`` of them (unique).
        sources: the file each molecule came from, ``M`` of them.
        fields: other per-record values kept for splitting (e.g. a ``split`` column), by name.
        report: one dict per skipped record or missing label (``REPORT_COLUMNS``).
        n_records: records read, usable or not.
        forces: per-atom force labels ``[A,3]`` (float32, NaN where a record has none), read from the
            per-atom array ``forces_key`` (extxyz ``forces``); ``None`` when not asked for.
    """

    y: Tensor
    targets: list[Target]
    ids: list[str]
    sources: list[str]
    fields: dict[str, list[Any]] = field(default_factory=dict)
    report: list[dict[str, Any]] = field(default_factory=list)
    embedded: int = 0  # molecules embedded in 3D from SMILES
    n_records: int = 0
    forces: Tensor | None = None
    forces_key: str | None = None

    # ------------------------------------------------------------------ the trainer's interface
    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    @property
    def elements(self) -> tuple[int, ...]:
        """Atomic numbers present, sorted."""
        return tuple(int(z) for z in torch.unique(self.z.long()).tolist())

    def target_values(self, mol_idx: Tensor, names: list[str]) -> Tensor:
        """Labels of molecules ``mol_idx [B]`` for the named targets ``[B,T]`` (NaN where missing)."""
        own = self.target_names
        missing = [n for n in names if n not in own]
        if missing:
            raise ValueError(f"the data has no target(s) {missing}; it has {own}")
        return self.y[mol_idx][:, [own.index(n) for n in names]]

    def batch(self, mol_idx: Tensor, graph: GraphConfig, targets: Sequence[str] | None = None) -> Batch:
        """A :class:`Batch` of molecules ``mol_idx [B]`` with the named targets as ``y [B,T]`` (and, when
        targets are named and the data has them, per-atom ``forces [N,3]``)."""
        b = super().batch(mol_idx, graph, targets)
        if self.forces is not None and targets is not None:
            b = b.replace(forces=self.forces[self.atom_index(mol_idx)].to(torch.get_default_dtype()))
        return b

    def name(self, k: int) -> str:
        return self.ids[k]

    # ------------------------------------------------------------------ reporting
    def label_counts(self) -> dict[str, int]:
        """Molecules with a label, per target."""
        return {t.name: int(torch.isfinite(self.y[:, j]).sum()) for j, t in enumerate(self.targets)}

    def summary(self) -> str:
        """One line: records read, molecules used, skipped (by reason), labels per target."""
        skipped = [r for r in self.report if r["status"] == "skipped"]
        reasons: dict[str, int] = {}
        for r in skipped:
            key = re.split(r"[:('\"]", r["reason"], maxsplit=1)[0].strip()  # the kind of problem, not its details
            reasons[key] = reasons.get(key, 0) + 1
        why = "; ".join(f"{n} {k}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
        counts = self.label_counts()
        if self.forces is not None:
            have = torch.isfinite(self.forces).all(1).float()  # [A]
            per_mol = torch.zeros(len(self)).index_add_(0, torch.repeat_interleave(torch.arange(len(self)),
                                                                                   self.counts), have)
            counts[f"forces ({self.forces_key})"] = int((per_mol == self.counts).sum())
        labels = ", ".join(f"{k} {v}" for k, v in counts.items())
        outliers = sum(r["status"] == "label dropped" for r in self.report)
        converted = sum(r["status"] == "converted" for r in self.report)
        changes = [f"{self.embedded} embedded in 3D from SMILES"] if self.embedded else []
        if converted:
            changes.append(f"{converted} converted (2D re-embedded, hydrogens added or salts stripped)")
        return (f"{self.n_records} record(s) read, {len(self)} used, {len(skipped)} skipped"
                + (f" ({why})" if why else "") + (f", {', '.join(changes)}" if changes else "")
                + f"; labels: {labels}"
                + (f"; {outliers} outlier label(s) dropped (see the report)" if outliers else ""))

    def write_report(self, path: str | Path) -> None:
        """Write every skipped record and missing label, with the reason, as CSV (atomically)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(REPORT_COLUMNS))
        w.writeheader()
        w.writerows(self.report)
        atomic_write_text(buf.getvalue(), path)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_records(cls, records: Iterable[Any], targets: Sequence[str | Target],
                     elements: Sequence[int] | None = None, keep_fields: Sequence[str] = (),
                     check_duplicates: bool = True, forces: str | None = None,
                     outlier_mad: float = OUTLIER_MAD, neutral_only: bool = False) -> LabelledDataset:
        """Build from :class:`~se3mol.io.Record` s; labels are read from ``record.properties[target.name]``.

        ``elements``: the atomic numbers a model can take (fine-tuning a shipped model); records with
        others are skipped. ``keep_fields``: record properties to keep per molecule (a split column).
        ``forces``: the per-atom ``[n_atoms,3]`` property holding force labels (extxyz ``forces``).
        ``outlier_mad``: a label further than this many robust standard deviations from its target's median is
        dropped and reported (:func:`outlier_labels`); 0 keeps every finite label. ``neutral_only``: skip charged
        molecules (data for a model that takes no charge input).
        """
        targets = _as_targets(targets)
        allowed = set(int(e) for e in elements) if elements is not None else None
        mols, ys, ids, sources, report, fs = [], [], [], [], [], []
        indices: list[int] = []  # each kept molecule's record index
        kept: dict[str, list[Any]] = {f: [] for f in keep_fields}
        seen: dict[str, int] = {}
        n_records = embedded = 0

        def note(rec: Any, status: str, reason: str) -> None:
            report.append({"index": rec.index, "id": rec.id, "source": rec.source, "status": status,
                           "reason": reason})

        for rec in records:
            n_records += 1
            mol = rec.molecule
            if mol is None:
                note(rec, "skipped", f"unreadable record: {rec.error or 'could not be read'}")
                continue
            if check_duplicates and rec.id in seen:
                note(rec, "skipped", f"duplicate id {rec.id!r} (first seen as record {seen[rec.id] + 1})")
                continue
            if mol.charge != 0 and neutral_only:
                note(rec, "skipped", f"charged species (total charge {mol.charge:+d}): the model takes neutral "
                                     "molecules only")
                continue
            if allowed is not None and (bad := sorted({int(z) for z in mol.z} - allowed)):
                from ase.data import chemical_symbols

                note(rec, "skipped", f"element(s) {', '.join(chemical_symbols[z] for z in bad)} not among the "
                                     "model's elements " + ", ".join(chemical_symbols[z] for z in sorted(allowed)))
                continue
            row, problems = [], []
            for t in targets:
                v, why = _label(rec.properties.get(t.name))
                row.append(v)
                if why == "missing":
                    problems.append(f"missing label for target {t.name!r}")
                elif why:
                    problems.append(f"{why} for target {t.name!r}")
            f = None
            if forces is not None:
                f, why = _forces(rec.properties.get(forces), mol.n_atoms)
                if why:
                    problems.append(f"{why} ({forces!r})")
            if all(math.isnan(v) for v in row) and f is None:
                note(rec, "skipped", "no usable label: " + "; ".join(problems))
                continue
            for p in problems:
                note(rec, "label missing", p)
            changed = [n for n in rec.notes if any(k in n for k in _CONVERSIONS)]
            if changed:
                note(rec, "converted", "; ".join(changed))
            embedded += any("embedded from SMILES" in n for n in rec.notes)
            seen[rec.id] = rec.index
            mols.append(mol)
            ys.append(row)
            if forces is not None:
                fs.append(f if f is not None else np.full((mol.n_atoms, 3), np.nan, np.float32))
            ids.append(rec.id)
            indices.append(rec.index)
            sources.append(rec.source)
            for key in keep_fields:
                kept[key].append(rec.properties.get(key))
        y = np.asarray(ys, dtype=np.float64).reshape(-1, len(targets))
        if outlier_mad > 0 and len(y):
            for k, j, why in outlier_labels(y, outlier_mad):
                report.append({"index": indices[k], "id": ids[k], "source": sources[k], "status": "label dropped",
                               "reason": f"{why} for target {targets[j].name!r}"})
                y[k, j] = np.nan
            keep = [forces is not None or not np.isnan(row).all() for row in y]
            for k in (k for k, ok in enumerate(keep) if not ok):
                report.append({"index": indices[k], "id": ids[k], "source": sources[k], "status": "skipped",
                               "reason": "no usable label: every label was an outlier"})
            if not all(keep):
                mols, ids, sources = ([v for v, ok in zip(lst, keep, strict=True) if ok]
                                      for lst in (mols, ids, sources))
                kept = {f: [v for v, ok in zip(vals, keep, strict=True) if ok] for f, vals in kept.items()}
                y = y[keep]
        ds = cls._pack(mols, y, targets, ids, sources, kept, report, n_records)
        ds.embedded = embedded
        if forces is not None:
            ds.forces = torch.from_numpy(np.concatenate(fs).astype(np.float32)) if fs else torch.zeros(0, 3)
            ds.forces_key = forces
        return ds

    @classmethod
    def _pack(cls, mols: list, y: np.ndarray, targets: list[Target], ids: list[str], sources: list[str],
              fields: dict[str, list[Any]], report: list[dict[str, Any]], n_records: int) -> LabelledDataset:
        counts = np.array([m.n_atoms for m in mols], dtype=np.int64)
        with_bonds = bool(mols) and all(m.bonds is not None for m in mols)
        bonds = orders = bond_counts = None
        if with_bonds:
            bonds = torch.from_numpy(np.concatenate([m.bonds for m in mols]).astype(np.int16)).reshape(-1, 2)
            orders = torch.from_numpy(np.concatenate([m.bond_orders for m in mols]).astype(np.float32))
            bond_counts = torch.tensor([len(m.bonds) for m in mols], dtype=torch.long)
        z = np.concatenate([m.z for m in mols]) if mols else np.zeros(0, np.int64)
        pos = np.concatenate([m.pos for m in mols]) if mols else np.zeros((0, 3))
        return cls(z=torch.from_numpy(z.astype(np.int16)), pos=torch.from_numpy(pos.astype(np.float32)),
                   counts=torch.from_numpy(counts), offsets=torch.from_numpy(np.cumsum(counts) - counts),
                   smiles=[m.smiles for m in mols], bonds=bonds, bond_orders=orders, bond_counts=bond_counts,
                   charge=torch.tensor([int(m.charge) for m in mols], dtype=torch.int8), y=torch.from_numpy(y),
                   targets=targets, ids=ids, sources=sources, fields=fields, report=report,
                   n_records=n_records)

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike], targets: Sequence[str | Target], *,
                   smiles_column: str | None = None, id_column: str | None = None, input_format: str | None = None,
                   embed_seed: int = 0, elements: Sequence[int] | None = None, keep_fields: Sequence[str] = (),
                   cache: bool = True, check_duplicates: bool = True, forces: str | None = None,
                   outlier_mad: float = OUTLIER_MAD, workers: int | None = None,
                   neutral_only: bool = False) -> LabelledDataset:
        """Read labelled molecules from SDF (data fields), XYZ/extxyz (info keys), CSV (columns) or any
        ASE format; ``.gz`` works everywhere; ``forces`` names a per-atom force array (extxyz ``forces``).
        ``workers``: processes that featurise the records at once (default :func:`featurise_workers`).
        Raises ``ValueError`` if a file does not exist."""
        targets = _as_targets(targets)
        files = [os.fspath(p) for p in paths]
        for p in files:
            if not os.path.isfile(p):
                raise ValueError(f"data file {p} does not exist")
        settings = {"targets": [t.to_dict() for t in targets], "smiles_column": smiles_column,
                    "id_column": id_column, "format": input_format, "embed_seed": embed_seed,
                    "elements": sorted(elements) if elements is not None else None, "fields": list(keep_fields),
                    "duplicates": check_duplicates, "forces": forces, "outlier_mad": outlier_mad,
                    "neutral_only": neutral_only,
                    "cache_format": CACHE_FORMAT,
                    "limits": asdict(limits.current())}  # what a record may be, and its fragment policy
        path = _cache_path(files, settings) if cache else None
        if path is not None and path.exists():
            try:
                return cls._from_cache(torch.load(path, weights_only=True), files)
            except Exception:  # noqa: BLE001  (a corrupt cache is rebuilt, not fatal)
                path.unlink(missing_ok=True)
        from se3mol.io import read_records  # RDKit and ASE: imported where files are read, not for training

        records = read_records(files, input_format, embed_seed=embed_seed, smiles_column=smiles_column,
                               id_column=id_column, workers=featurise_workers() if workers is None else workers)
        ds = cls.from_records(_logged(records, ", ".join(files)), targets, elements, keep_fields, check_duplicates,
                              forces, outlier_mad, neutral_only)
        if path is not None:
            with atomic_open(path, "wb") as fh:
                torch.save({**ds._to_cache(), "files": json.dumps(files)}, fh)
        return ds

    @classmethod
    def from_dataframe(cls, df: Any, targets: Sequence[str | Target], *, smiles_column: str = "smiles",
                       id_column: str | None = None, embed_seed: int = 0, elements: Sequence[int] | None = None,
                       keep_fields: Sequence[str] = (), outlier_mad: float = OUTLIER_MAD) -> LabelledDataset:
        """Build from a pandas DataFrame: a SMILES column (embedded in 3D, seeded) or a ``molecule``
        column of :class:`~se3mol.molecule.Molecule` objects, and one column per target."""
        targets = _as_targets(targets)
        use_molecules = "molecule" in df.columns
        if not use_molecules and smiles_column not in df.columns:
            raise ValueError(f"no column {smiles_column!r} (nor 'molecule') in the DataFrame; it has "
                             f"{list(df.columns)}")

        from se3mol.chem import embed_smiles
        from se3mol.io import Record

        def records():
            for k, row in enumerate(df.to_dict("records")):
                rid = str(row[id_column]) if id_column else f"row {k + 1}"
                props = {c: (None if _is_na(v) else v) for c, v in row.items() if c not in (smiles_column, id_column)}
                if use_molecules:
                    mol, error = row["molecule"], None
                else:
                    try:
                        mol, error = embed_smiles(str(row[smiles_column]), seed=embed_seed, name=rid), None
                    except ValueError as exc:
                        mol, error = None, str(exc)
                yield Record(index=k, source="<DataFrame>", id=rid, molecule=mol, error=error,
                             smiles=mol.smiles if mol is not None else "", properties=props)

        return cls.from_records(records(), targets, elements, keep_fields, outlier_mad=outlier_mad)

    def _to_cache(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("z", "pos", "counts", "offsets", "bonds", "bond_orders", "bond_counts",
                                           "charge", "y", "forces")}
        d["meta"] = json.dumps({"smiles": self.smiles, "targets": [t.to_dict() for t in self.targets],
                                "ids": self.ids, "sources": self.sources, "fields": self.fields,
                                "report": self.report, "n_records": self.n_records,
                                "forces_key": self.forces_key, "embedded": self.embedded})
        return d

    @classmethod
    def _from_cache(cls, d: dict[str, Any], files: Sequence[str] = ()) -> LabelledDataset:
        """The data set a cache entry holds. The entry is keyed by the files' contents: it may have been made from
        copies at other paths (in the same order), so molecules and report entries are given the paths of
        ``files``."""
        rename = dict(zip(json.loads(d.pop("files", "[]")), files, strict=False))
        meta = json.loads(d.pop("meta"))
        report = [{**r, "source": rename.get(r["source"], r["source"])} for r in meta["report"]]
        return cls(**d, smiles=meta["smiles"], targets=[Target(**t) for t in meta["targets"]], ids=meta["ids"],
                   sources=[rename.get(s, s) for s in meta["sources"]], fields=meta["fields"], report=report,
                   n_records=meta["n_records"], forces_key=meta.get("forces_key"), embedded=meta.get("embedded", 0))

    def _charges(self) -> Tensor:
        """Total charge of every molecule ``[M]`` (int8), zeros when none was recorded."""
        return self.charge if self.charge is not None else torch.zeros(len(self), dtype=torch.int8)

    def concat(self, other: LabelledDataset) -> LabelledDataset:
        """This data set followed by ``other`` (same targets); ids must stay unique."""
        if [t.name for t in other.targets] != self.target_names:
            raise ValueError("cannot join data sets with different targets")
        dup = set(self.ids) & set(other.ids)
        if dup:
            raise ValueError(f"{len(dup)} id(s) appear in two files (e.g. {sorted(dup)[0]!r}): a molecule must not be "
                             "in two parts of the split")
        if (self.forces is None) != (other.forces is None):
            raise ValueError("cannot join a data set with forces to one without")
        bond_tables = ([torch.cat(pair) for pair in zip(self.bond_tables(), other.bond_tables(), strict=True)]
                       if self.bonds is not None and other.bonds is not None else [None, None, None])
        counts = torch.cat([self.counts, other.counts])
        keys = set(self.fields) | set(other.fields)
        return LabelledDataset(
            z=torch.cat([self.z, other.z]), pos=torch.cat([self.pos, other.pos]), counts=counts,
            offsets=torch.cumsum(counts, 0) - counts, smiles=self.smiles + other.smiles,
            bonds=bond_tables[0], bond_orders=bond_tables[1], bond_counts=bond_tables[2],
            charge=torch.cat([self._charges(), other._charges()]), y=torch.cat([self.y, other.y]),
            targets=self.targets, ids=self.ids + other.ids,
            sources=self.sources + other.sources,
            fields={k: self.fields.get(k, [None] * len(self)) + other.fields.get(k, [None] * len(other)) for k in keys},
            report=self.report + other.report, n_records=self.n_records + other.n_records,
            embedded=self.embedded + other.embedded,
            forces=torch.cat([self.forces, other.forces]) if self.forces is not None and other.forces is not None
            else None,
            forces_key=self.forces_key)


def featurise_workers() -> int:
    """Processes that featurise a data file at once: the CPUs this process may use, at most 4 (embedding SMILES in
    3D is ~0.2 s per drug-sized molecule; the records still come in order). ``SE3MOL_FEATURISE_WORKERS`` sets it."""
    if os.environ.get("SE3MOL_FEATURISE_WORKERS"):
        return max(1, int(os.environ["SE3MOL_FEATURISE_WORKERS"]))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _logged(records: Iterable[Any], what: str) -> Iterator[Any]:
    """``records``, with an INFO message on logger ``se3mol.data.files`` every :data:`PROGRESS_EVERY` seconds
    (records read, rate) and at the end if that took longer: ``se3mol train`` shows them while it featurises."""
    t0 = last = time.perf_counter()
    n = 0
    for rec in records:
        n += 1
        yield rec
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY:
            _log.info("featurising %s: %d records read (%.1f per second)", what, n, n / (now - t0))
            last = now
    if last > t0:
        _log.info("featurised %s: %d records in %.0f s (cached for the next run)", what, n, time.perf_counter() - t0)


def outlier_labels(y: np.ndarray, limit: float = OUTLIER_MAD) -> list[tuple[int, int, str]]:
    """``(row, column, reason)`` of each label of ``y [M,T]`` (NaN: missing) further than ``limit`` robust
    standard deviations (1.4826 x the median absolute deviation) from its column's median: a typo or unit
    slip (1e30 beside values of order 1) that would otherwise dominate training. A column whose labels are
    mostly equal (deviation 0) is left alone.

    >>> outlier_labels(np.array([[1.0], [2.0], [1.5], [1e30], [0.5]]))
    [(3, 0, 'label 1e+30 is an outlier: 1.3e+30 robust standard deviations from the median 1.5 (limit 10)')]
    """
    out = []
    for j in range(y.shape[1]):
        col = y[:, j]
        ok = np.isfinite(col)
        if ok.sum() < 3:
            continue
        med = float(np.median(col[ok]))
        sigma = 1.4826 * float(np.median(np.abs(col[ok] - med)))
        if sigma == 0:
            continue
        z = np.abs(col - med) / sigma
        for k in np.flatnonzero(ok & (z > limit)):
            out.append((int(k), j, f"label {col[k]:.6g} is an outlier: {z[k]:.2g} robust standard deviations from "
                                   f"the median {med:.6g} (limit {limit:g})"))
    return out


def _forces(value: Any, n_atoms: int) -> tuple[np.ndarray | None, str | None]:
    """Force labels ``[n_atoms,3]`` (float32) from a record's property, or why they are unusable."""
    if value is None:
        return None, "missing forces"
    try:
        f = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None, "non-numeric forces"
    if f.shape != (n_atoms, 3):
        return None, f"forces of shape {list(f.shape)} for {n_atoms} atoms"
    if not np.isfinite(f).all():
        return None, "non-finite forces"
    return f.astype(np.float32), None


def _is_na(value: Any) -> bool:
    try:
        return value is None or (isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


def _cache_path(paths: Sequence[str], settings: dict[str, Any]) -> Path:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return cache_dir() / f"labelled-v{CACHE_FORMAT}-{h.hexdigest()[:20]}.pt"


def attach_fingerprints(data: PackedMolecules, spec: dict[str, Any]) -> None:
    """Attach every molecule's 2D fingerprint (``spec``: see :func:`se3mol.nn.model.check_fingerprint`) as
    ``data.mol_attr [M,F]`` (uint8 counts), from its SMILES. Raises ``ValueError`` naming the molecules that have
    no usable SMILES (3D records whose bonds could not be perceived)."""
    from se3mol.chem import morgan_counts

    rows, bad = [], []
    for k, smi in enumerate(data.smiles):
        try:
            rows.append(morgan_counts(smi, spec["radius"], spec["bits"]))
        except ValueError:
            bad.append(k)
            rows.append(np.zeros(spec["bits"], np.uint8))
    if bad:
        ids = getattr(data, "ids", None)
        names = ", ".join(repr(ids[k]) if ids else f"#{k}" for k in bad[:3])
        raise ValueError(f"{len(bad)} molecule(s) have no usable SMILES for the 2D fingerprint (e.g. {names}: their "
                         "bonds could not be perceived from the coordinates); train with --fingerprint none")
    data.mol_attr = torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, spec["bits"], dtype=torch.uint8)


def split_dataset(train: LabelledDataset, method: str = "random", fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0, val: LabelledDataset | None = None,
                  test: LabelledDataset | None = None) -> tuple[LabelledDataset, dict[str, Tensor]]:
    """Join the given parts and split: ``val`` / ``test`` data sets, where given, are those parts; the
    parts not given are carved out of ``train`` by ``method`` (``random``, ``scaffold``, ``column:NAME``)
    with ``fractions`` renormalised over them. Returns the joined data set and its split.

    Raises:
        ValueError: if a part is empty, or fewer than ``MIN_MOLECULES`` molecules are usable.
    """
    from se3mol.data.splits import check_fractions, make_split

    f = list(check_fractions(fractions))
    if val is not None:
        f[1] = 0.0
    if test is not None:
        f[2] = 0.0
    total = sum(f)
    own = make_split(method, len(train), train.smiles, train.fields, [x / total for x in f], seed) if (
        val is None or test is None or method.startswith("column:")) else {
        "train": torch.arange(len(train)), "val": torch.zeros(0, dtype=torch.long),
        "test": torch.zeros(0, dtype=torch.long)}
    data, split = train, dict(own)
    for part, extra in (("val", val), ("test", test)):
        if extra is None:
            continue
        if len(split[part]):
            raise ValueError(f"--split {method} puts molecules in {part}, and a separate {part} file was given too")
        start = len(data)
        data = data.concat(extra)
        split[part] = torch.arange(start, len(data))
    n = sum(len(v) for v in split.values())
    if n < MIN_MOLECULES:
        raise ValueError(f"only {n} usable molecule(s); training needs at least {MIN_MOLECULES} "
                         f"({data.summary()})")
    for part in ("train", "val", "test"):
        if len(split[part]) == 0:
            raise ValueError(f"the {part} part of the split is empty ({method}, fractions {list(fractions)}); "
                             "give more data, other fractions, or a file for it")
    return data, split
