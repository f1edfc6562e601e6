"""Batch scoring: records in, one row per record out, in input order, never silently dropped.

Scoring streams: records are read, featurised (parsing, domain checks, bond perception, graph building),
batched, scored and handed on ``batch_size`` at a time, so memory is bounded by the batch size and not by
the input. Reading and featurising run in a background thread, ``prefetch`` batches ahead of the model,
so that RDKit parsing the next batch overlaps with the model scoring this one. The overlap is partial:
torch releases the GIL inside its kernels, but RDKit's molfile parser and torch's Python-level dispatch
both hold it (benchmarks/predict/results/predict_scale.md measures the split). All RDKit work happens in that
one thread (see :mod:`se3mol.io` on RDKit's log).

>>> from se3mol.prediction import Predictor            # doctest: +SKIP
>>> p = Predictor.from_specs(["qm9-egnn-gap"])      # doctest: +SKIP
>>> rows = list(p.predict_files(["examples/molecules.sdf"]))  # doctest: +SKIP

CSV input (a table with a SMILES column) keeps its other columns: they follow the model's columns in
every row, named as in the input (``input_<name>`` where that clashes with an output column).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from se3mol.graph import Batch, GraphConfig, collate
from se3mol.io import CsvOptions, Record, parse_shard, plan_csv, read_records
from se3mol.molecule import Molecule, check_elements
from se3mol.nn.model import MoleculeModel
from se3mol.pretrained import DEFAULT_MODEL, load_pretrained, resolve_checkpoints, std_scale
from se3mol.targets import Target

BASE_COLUMNS = ("index", "id", "source", "smiles", "n_atoms", "status", "error")
# After the predictions, so the columns a pipeline sorts on come at fixed, early positions.
TRAILING_COLUMNS = ("warning", "notes", "canonical_smiles")
# Prefix of a CSV input's column whose name is already an output column (e.g. a measured "gap_meV").
PASSTHROUGH_PREFIX = "input_"


# Error messages kept for the end-of-run summary; the rest are only counted (memory stays flat).
MAX_ERRORS_KEPT = 100

T = TypeVar("T")


@dataclass
class PredictStats:
    """Counts and where the time went (seconds).

    ``read_s`` and ``featurise_s`` are spent in the featurising thread and overlap with ``model_s``;
    ``wait_s`` is the part of the wall time the model sat idle waiting for the next featurised batch,
    which is the cost of featurisation that the overlap did not hide. ``write_s`` is filled in by whoever
    writes the rows (the CLI). ``wall_s`` runs from the first request for rows to the last.
    """

    n_records: int = 0
    n_ok: int = 0
    n_error: int = 0
    read_s: float = 0.0
    featurise_s: float = 0.0
    model_s: float = 0.0
    wait_s: float = 0.0
    write_s: float = 0.0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS_KEPT only

    def as_dict(self) -> dict[str, float | int]:
        """Counts and times, rounded for reports."""
        keys = ("n_records", "n_ok", "n_error", "read_s", "featurise_s", "model_s", "wait_s", "write_s", "wall_s")
        return {k: round(v, 3) if isinstance(v, float) else v for k in keys if (v := getattr(self, k)) is not None}

    def summary(self) -> str:
        """One paragraph on where the time went, for ``se3mol predict --profile``."""
        rate = self.n_records / self.wall_s if self.wall_s > 0 else float("nan")
        return (f"time split over {self.wall_s:.2f} s wall ({self.n_records} records, {rate:.1f} records/s):\n"
                f"  featurising thread: read+parse {self.read_s:.2f} s, featurise (checks, bonds, graphs) "
                f"{self.featurise_s:.2f} s\n"
                f"  main thread: model {self.model_s:.2f} s, waiting for featurised input {self.wait_s:.2f} s, "
                f"write {self.write_s:.2f} s")


@dataclass(frozen=True)
class _PassThrough:
    """Input values copied into the rows: input name -> output column. CSV columns for records of ``sources``;
    the names in ``fields`` (``--keep-fields``: SD data fields, extxyz info keys) for records of every source."""

    names: dict[str, str]
    sources: frozenset[str]
    fields: frozenset[str] = frozenset()


@dataclass
class _Prepared:
    """One batch, featurised: a row per record, and the molecules to score with their graphs per model."""

    rows: list[dict[str, Any]]
    todo: list[tuple[dict[str, Any], Molecule]]
    batches: list[Batch] | None  # one per model, None when nothing in the chunk can be scored


class Predictor:
    """Scores molecules with one model, or an ensemble of models with the same targets."""

    def __init__(self, models: Sequence[MoleculeModel], checkpoints: Sequence[dict[str, Any]] | None = None,
                 batch_size: int = 64, device: str | torch.device = "cpu", prefetch: int = 2,
                 std_scale: Mapping[str, float] | None = None) -> None:
        """``prefetch``: batches read and featurised ahead of the model in a background thread (0: none,
        everything in the calling thread). ``std_scale``: per target name, the factor the members' spread is
        multiplied by in the ``_std`` columns (a shipped ensemble's calibration; default 1)."""
        if not models:
            raise ValueError("no model given")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, got {prefetch}")
        names = [[t.name for t in m.targets] for m in models]
        if any(n != names[0] for n in names):
            raise ValueError(f"ensemble members predict different targets: {names}")
        self.models = [m.to(device).eval() for m in models]
        self.checkpoints = list(checkpoints or [{} for _ in models])
        self.targets: list[Target] = list(models[0].targets)
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.device = torch.device(device)
        self.elements = set.intersection(*(set(m.elements) for m in self.models))
        self.domain = [c.get("domain", {}) for c in self.checkpoints]
        prints = {json.dumps(getattr(m, "fingerprint", None), sort_keys=True) for m in self.models} - {"null"}
        if len(prints) > 1:
            raise ValueError(f"ensemble members take different fingerprints: {sorted(prints)}")
        self.fingerprint: dict[str, Any] | None = json.loads(prints.pop()) if prints else None
        scale = dict(std_scale or {})
        unknown = sorted(set(scale) - {t.name for t in self.targets})
        if unknown:
            raise ValueError(f"std_scale names targets the models do not predict: {', '.join(unknown)}")
        self.std_scale = torch.tensor([scale.get(t.name, 1.0) for t in self.targets for _ in range(t.width)],
                                      dtype=torch.float64)
        self.stats = PredictStats()
        #: Output names of the CSV input columns passed through by the last call of predict_file_chunks
        #: (or predict_files, once iterated); empty for other inputs. They end :attr:`columns`.
        self.input_columns: list[str] = []

    @classmethod
    def from_specs(cls, specs: Sequence[str | os.PathLike], batch_size: int = 64,
                   device: str | torch.device = "cpu", prefetch: int = 2) -> Predictor:
        """Load shipped model names, checkpoint paths or run directories (an ensemble's: every member).

        A shipped ensemble given alone brings its calibration (:func:`se3mol.pretrained.std_scale`); members
        put together here give their raw spread."""

        # A run directory of an ensemble (train --ensemble N) stands for all of its members.
        loaded = [load_pretrained(p, device) for s in specs for p in resolve_checkpoints(s)]
        scale = std_scale(specs[0]) if len(specs) == 1 else None
        return cls([m for m, _ in loaded], [c for _, c in loaded], batch_size, device, prefetch, scale)

    @property
    def columns(self) -> list[str]:
        """The output columns: :attr:`model_columns`, then :attr:`input_columns` (CSV pass-through)."""
        return self.model_columns + self.input_columns

    @property
    def model_columns(self) -> list[str]:
        """Base columns, one per predicted value (and ``_std`` for an ensemble), then warning and notes."""
        cols = list(BASE_COLUMNS)
        for t in self.targets:
            for c in t.columns:
                cols.append(c)
                if len(self.models) > 1:
                    cols.append(f"{c}_std")
        return cols + list(TRAILING_COLUMNS)

    # ------------------------------------------------------------------ records
    def predict_files(self, paths: Sequence[str], input_format: str | None = None,
                      embed_seed: int = 0, stdin=None,
                      shard: tuple[int, int] | str | None = None, *, smiles_column: str | None = None,
                      id_column: str | None = None, keep_fields: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Rows for every record of ``paths`` (``-`` is stdin), in input order; ``keep_fields`` as in
        :meth:`predict_file_chunks`.

        ``shard=(i, n)`` (or ``"i/n"``) scores only the records whose index is ``i`` modulo ``n``; their
        ``index`` column stays the position in the whole input. See :func:`se3mol.io.read_records`.

        CSV inputs: ``smiles_column`` / ``id_column`` name the columns with the SMILES and the record ids
        (see :func:`se3mol.io.read_records`); every other column is passed through into the rows, after
        :attr:`model_columns`, under the names of :attr:`input_columns` (``None`` where a record has no
        value: an empty cell, another input file, a row that could not be split).
        """
        for chunk in self.predict_file_chunks(paths, input_format, embed_seed, stdin, shard,
                                              smiles_column=smiles_column, id_column=id_column,
                                              keep_fields=keep_fields):
            yield from chunk

    def predict_file_chunks(self, paths: Sequence[str], input_format: str | None = None,
                            embed_seed: int = 0, stdin=None,
                            shard: tuple[int, int] | str | None = None, *, smiles_column: str | None = None,
                            id_column: str | None = None, keep_fields: Sequence[str] = (),
                            ) -> Generator[list[dict[str, Any]], None, None]:
        """The same rows, one list per batch (what a streaming writer flushes at a time). ``keep_fields``: record
        properties (SD data fields, extxyz info keys) copied into columns of their own, after the predictions.

        Arguments are checked here, before anything is read (``ValueError`` for a bad format or shard).
        The headers of CSV inputs are read here too (from stdin: its first line, handed on to the reader),
        so that :attr:`columns` is complete when this returns: a writer can put out its header first.
        """
        if shard is not None:
            parse_shard(shard)  # a bad shard is refused before stdin is looked at
        plan = plan_csv(paths, input_format, stdin, CsvOptions(smiles_column, id_column))
        records = read_records(paths, input_format, stdin=plan.stdin, embed_seed=embed_seed, shard=shard,
                               smiles_column=smiles_column, id_column=id_column)
        fields = [f for f in keep_fields if f not in plan.columns]
        passthrough = _PassThrough(self._output_names([*plan.columns, *fields]), plan.sources, frozenset(fields))
        self.input_columns = list(passthrough.names.values())
        return self._chunks(records, passthrough)

    def _output_names(self, input_names: Sequence[str]) -> dict[str, str]:
        """Input column -> output column: the same name, prefixed ``input_`` (again) while it is taken."""
        taken = set(self.model_columns)
        names = {}
        for name in input_names:
            out = name
            while out in taken:
                out = PASSTHROUGH_PREFIX + out
            taken.add(out)
            names[name] = out
        return names

    def predict_molecules(self, mols: Iterable[Molecule],
                          shard: tuple[int, int] | str | None = None) -> Iterator[dict[str, Any]]:
        """Rows for in-memory molecules (``shard`` as in :meth:`predict_files`)."""
        i, n = (0, 1) if shard is None else parse_shard(shard)
        self.input_columns = []
        records = (Record(index=k, source="<python>", id=m.name or f"mol{k + 1}", molecule=m, smiles=m.smiles,
                          notes=list(m.notes)) for k, m in enumerate(mols) if k % n == i)
        for chunk in self.predict_chunks(records):
            yield from chunk

    def predict_chunks(self, records: Iterable[Any]) -> Generator[list[dict[str, Any]], None, None]:
        """Score records ``batch_size`` at a time; yield each chunk's rows in input order.

        With ``prefetch > 0`` the records are read and featurised in a background thread; an exception
        raised there (by ``records``) is re-raised here, after the rows of the chunks before it. Closing
        the generator early (e.g. the reader of a pipe went away) stops that thread.
        """
        return self._chunks(records, None)

    def _chunks(self, records: Iterable[Any],
                passthrough: _PassThrough | None) -> Generator[list[dict[str, Any]], None, None]:
        prepared = self._prepared_chunks(iter(records), passthrough)
        if self.prefetch:
            prepared = _background(prepared, self.prefetch, self.stats)
        t_start = time.perf_counter()
        try:
            for prep in prepared:
                yield self._score_prepared(prep)
        finally:
            self.stats.wall_s += time.perf_counter() - t_start
            prepared.close()

    def _prepared_chunks(self, records: Iterator[Any],
                         passthrough: _PassThrough | None) -> Generator[_Prepared, None, None]:
        """Read ``batch_size`` records at a time and featurise them (the part that can run ahead)."""
        try:
            while True:
                t0 = time.perf_counter()
                chunk = list(itertools.islice(records, self.batch_size))
                t1 = time.perf_counter()
                self.stats.read_s += t1 - t0
                if not chunk:
                    return
                prep = self._featurise(chunk, passthrough)
                self.stats.featurise_s += time.perf_counter() - t1
                yield prep
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()  # close the input files now, in this thread, not at garbage collection

    def _featurise(self, chunk: list[Any], passthrough: _PassThrough | None = None) -> _Prepared:
        rows = [self._row(r, passthrough) for r in chunk]
        todo = []
        for row, rec in zip(rows, chunk, strict=True):
            if rec.molecule is None:
                row["error"] = rec.error or "record could not be read"
                continue
            try:
                mol = self._prepare(rec.molecule, row)
            except ValueError as exc:
                row["error"] = str(exc)
                continue
            todo.append((row, mol))
        batches = None
        if todo:
            try:
                batches = self._collate([m for _, m in todo])
            except (ValueError, RuntimeError):
                batches = None  # _score_prepared isolates the molecule that cannot be batched
        return _Prepared(rows, todo, batches)

    def _collate(self, mols: list[Molecule]) -> list[Batch]:
        """One batch per model; models with the same graph settings share it."""
        built: dict[GraphConfig, Batch] = {}
        out = []
        for m in self.models:
            if m.graph not in built:
                built[m.graph] = collate(mols, m.graph)
            out.append(built[m.graph])
        if self.fingerprint is not None:
            from se3mol.chem import morgan_matrix

            fp = torch.from_numpy(morgan_matrix([m.smiles for m in mols], self.fingerprint))
            out = [b.replace(mol_attr=fp) if getattr(m, "fingerprint", None) else b
                   for m, b in zip(self.models, out, strict=True)]
        return out

    def _score_prepared(self, prep: _Prepared) -> list[dict[str, Any]]:
        if prep.todo:
            t0 = time.perf_counter()
            try:
                if prep.batches is None:
                    raise ValueError("the batch could not be built")
                values = self._score(prep.batches, len(prep.todo))
                for (row, _), v in zip(prep.todo, values, strict=True):
                    row.update(v)
            except (ValueError, RuntimeError):
                # One bad molecule must not take the batch down: score one by one to isolate it.
                for row, mol in prep.todo:
                    try:
                        row.update(self._score(self._collate([mol]), 1)[0])
                    except (ValueError, RuntimeError) as exc:
                        row["error"] = f"model failed on this molecule: {exc}"
            self.stats.model_s += time.perf_counter() - t0
        for row in prep.rows:
            row["status"] = "error" if row["error"] else "ok"
            self.stats.n_records += 1
            if row["error"]:
                self.stats.n_error += 1
                if len(self.stats.errors) < MAX_ERRORS_KEPT:
                    self.stats.errors.append(f"{row['source']} record {row['id']}: {row['error']}")
            else:
                self.stats.n_ok += 1
        return prep.rows

    def _row(self, rec: Any, passthrough: _PassThrough | None = None) -> dict[str, Any]:
        mol = rec.molecule
        row: dict[str, Any] = {c: None for c in self.model_columns}
        canonical = rec.smiles or (mol.smiles if mol else "")
        row.update(index=rec.index, id=rec.id, source=rec.source, smiles=rec.input_smiles or canonical,
                   n_atoms=mol.n_atoms if mol is not None else None, status="", error=None, warning=None,
                   notes="; ".join(rec.notes) if rec.notes else None, canonical_smiles=canonical or None)
        if passthrough is not None:
            # Only CSV records: an SD data field of the same name is no value of that column.
            values = rec.properties if rec.source in passthrough.sources else {}
            row.update({out: values.get(name) if name not in passthrough.fields else rec.properties.get(name)
                        for name, out in passthrough.names.items()})
        return row

    def _prepare(self, mol: Molecule, row: dict[str, Any]) -> Molecule:
        """Domain checks: refuse what the models cannot score, warn about what they rarely saw."""
        check_elements(mol.z, self.elements)
        if mol.charge != 0 and not all(getattr(m, "charge_input", False) for m in self.models):
            raise ValueError(f"charged species (total charge {mol.charge:+d}); the model takes neutral molecules "
                             "only (a model trained on charged molecules takes the charge as an input)")
        if mol.radical_electrons:
            raise ValueError(f"radical ({mol.radical_electrons} unpaired electron(s)); the model was trained on "
                             "closed-shell molecules only")
        warnings = mol.physical_warnings()
        seen = {int(q) for d in self.domain for q in d.get("charges", [d.get("charge", 0)])}
        if seen and mol.charge not in seen:
            had = ", ".join(f"{q:+d}" for q in sorted(seen))
            warnings.append(f"total charge {mol.charge:+d}; training molecules had {had} (extrapolation)")
        for d in self.domain:
            if d.get("max_heavy_atoms") is not None and mol.n_heavy > d["max_heavy_atoms"]:
                warnings.append(f"{mol.n_heavy} heavy atoms; training molecules had at most {d['max_heavy_atoms']}"
                                " (extrapolation)")
                break
        if warnings:
            row["warning"] = "; ".join(warnings)
        if self.fingerprint is not None:
            if not mol.smiles:
                raise ValueError("no SMILES could be perceived for this molecule, and the model takes its 2D "
                                 "fingerprint")
            from se3mol.chem import morgan_counts

            morgan_counts(mol.smiles, self.fingerprint["radius"], self.fingerprint["bits"])  # ValueError: its row
        if any(m.graph.needs_bonds for m in self.models) and mol.bonds is None:
            from se3mol.chem import perceive_bonds

            mol = perceive_bonds(mol)
        return mol

    @torch.no_grad()
    def _score(self, batches: list[Batch], n_mols: int) -> list[dict[str, float]]:
        per_model = []
        for m, batch in zip(self.models, batches, strict=True):
            per_model.append(m.heads.stack(m(batch.to(self.device))).double().cpu())  # [B,D]
        p = torch.stack(per_model)  # [M,B,D]
        if not torch.isfinite(p).all():
            raise ValueError("model produced a non-finite value")
        mean = p.mean(0).tolist()
        std = (p.std(0, unbiased=True) * self.std_scale).tolist() if len(self.models) > 1 else None
        out_rows = []
        for b in range(n_mols):
            row: dict[str, float] = {}
            col = 0
            for t in self.targets:
                row.update(t.row_values(mean[b][col:col + t.width]))
                if std is not None:
                    row.update({f"{k}_std": v for k, v in t.row_values(std[b][col:col + t.width]).items()})
                col += t.width
            out_rows.append(row)
        return out_rows


def predict(inputs: Sequence[str] | Sequence[Molecule], model: str | Sequence[str] = DEFAULT_MODEL,
            batch_size: int = 64, device: str = "cpu", shard: tuple[int, int] | str | None = None, *,
            smiles_column: str | None = None, id_column: str | None = None):
    """Score files (paths) or :class:`Molecule` objects; returns a pandas DataFrame, one row per record.

    ``shard=(i, n)`` keeps the records whose index is ``i`` modulo ``n`` (files or molecules alike).
    CSV files: ``smiles_column`` / ``id_column`` as in :meth:`Predictor.predict_files`; their other columns
    come after the model's, in every row.

    >>> df = predict(["examples/molecules.sdf"])   # doctest: +SKIP
    >>> df[["id", "gap_meV"]].head()               # doctest: +SKIP
    >>> predict(["assay.csv"], smiles_column="smiles", id_column="name")   # doctest: +SKIP
    """
    import pandas as pd

    specs = [model] if isinstance(model, str | os.PathLike) else list(model)
    p = Predictor.from_specs(specs, batch_size, device)
    if inputs and isinstance(inputs[0], Molecule):
        rows = list(p.predict_molecules(inputs, shard=shard))  # type: ignore[arg-type]
    else:
        rows = list(p.predict_files([str(x) for x in inputs], shard=shard, smiles_column=smiles_column,
                                    id_column=id_column))
    return pd.DataFrame(rows, columns=p.columns)


_DONE = object()
JOIN_TIMEOUT = 5.0  # seconds the consumer waits for the featurising thread to finish its current record


def _background(source: Iterator[T], depth: int, stats: PredictStats) -> Generator[T, None, None]:
    """Items of ``source``, produced by a daemon thread at most ``depth`` items ahead, in order.

    The queue is bounded, so memory is bounded by ``depth`` items. An exception in ``source`` is re-raised
    in the consumer at the point where it happened. When the consumer stops (generator closed, an
    exception, KeyboardInterrupt), the thread is told to stop; it closes ``source`` as soon as its current
    item is done, and the consumer waits up to ``JOIN_TIMEOUT`` seconds for that: a daemon thread still
    inside RDKit's C++ code when the interpreter exits is unwound by ``pthread_exit`` and aborts the whole
    process ("terminate called without an active exception", exit 134; seen with ``| head``). It is not
    joined without a limit: it may be blocked reading a slow stdin (plain C, safe to abandon), and as a
    daemon it cannot keep the process alive.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((None, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="se3mol-featurise", daemon=True)
    thread.start()
    try:
        while True:
            t0 = time.perf_counter()
            item, exc = q.get()
            stats.wait_s += time.perf_counter() - t0
            if exc is not None:
                raise exc
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT)
