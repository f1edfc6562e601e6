"""Batch scoring: records in, one row per record out, in input order, never silently dropped.

>>> from se3mol.predict import Predictor            # doctest: +SKIP
>>> p = Predictor.from_specs(["qm9-egnn-gap"])      # doctest: +SKIP
>>> rows = list(p.predict_files(["examples/molecules.sdf"]))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from se3mol.graph import collate
from se3mol.molecule import Molecule
from se3mol.nn.model import MoleculeModel
from se3mol.targets import Target

BASE_COLUMNS = ("index", "id", "source", "smiles", "n_atoms", "status", "error")
# After the predictions, so the columns a pipeline sorts on come at fixed, early positions.
TRAILING_COLUMNS = ("warning", "notes")


@dataclass
class PredictStats:
    """Counts and where the time went."""

    n_records: int = 0
    n_ok: int = 0
    n_error: int = 0
    read_s: float = 0.0
    model_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class Predictor:
    """Scores molecules with one model, or an ensemble of models with the same targets."""

    def __init__(self, models: Sequence[MoleculeModel], checkpoints: Sequence[dict[str, Any]] | None = None,
                 batch_size: int = 64, device: str | torch.device = "cpu") -> None:
        if not models:
            raise ValueError("no model given")
        names = [[t.name for t in m.targets] for m in models]
        if any(n != names[0] for n in names):
            raise ValueError(f"ensemble members predict different targets: {names}")
        self.models = [m.to(device).eval() for m in models]
        self.checkpoints = list(checkpoints or [{} for _ in models])
        self.targets: list[Target] = list(models[0].targets)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.elements = set.intersection(*(set(m.elements) for m in self.models))
        self.domain = [c.get("domain", {}) for c in self.checkpoints]
        self.stats = PredictStats()

    @classmethod
    def from_specs(cls, specs: Sequence[str | os.PathLike], batch_size: int = 64,
                   device: str | torch.device = "cpu") -> Predictor:
        """Load shipped model names or checkpoint paths."""
        from se3mol.pretrained import load_pretrained

        loaded = [load_pretrained(s, device) for s in specs]
        return cls([m for m, _ in loaded], [c for _, c in loaded], batch_size, device)

    @property
    def columns(self) -> list[str]:
        cols = list(BASE_COLUMNS)
        for t in self.targets:
            for c in t.columns:
                cols.append(c)
                if len(self.models) > 1:
                    cols.append(f"{c}_std")
        return cols + list(TRAILING_COLUMNS)

    # ------------------------------------------------------------------ records
    def predict_files(self, paths: Sequence[str], input_format: str | None = None,
                      embed_seed: int = 0, stdin=None) -> Iterator[dict[str, Any]]:
        """Rows for every record of ``paths`` (``-`` is stdin), in input order."""
        for chunk in self.predict_file_chunks(paths, input_format, embed_seed, stdin):
            yield from chunk

    def predict_file_chunks(self, paths: Sequence[str], input_format: str | None = None,
                            embed_seed: int = 0, stdin=None) -> Iterator[list[dict[str, Any]]]:
        """The same rows, one list per batch (what a streaming writer flushes at a time)."""
        from se3mol.io import read_records

        yield from self.predict_chunks(read_records(paths, input_format, stdin=stdin, embed_seed=embed_seed))

    def predict_molecules(self, mols: Iterable[Molecule]) -> Iterator[dict[str, Any]]:
        """Rows for in-memory molecules."""
        from se3mol.io import Record

        records = (Record(index=k, source="<python>", id=m.name or f"mol{k + 1}", molecule=m, smiles=m.smiles,
                          notes=list(m.notes)) for k, m in enumerate(mols))
        for chunk in self.predict_chunks(records):
            yield from chunk

    def predict_chunks(self, records: Iterable[Any]) -> Iterator[list[dict[str, Any]]]:
        """Score records ``batch_size`` at a time; yield each chunk's rows in input order."""
        it = iter(records)
        while True:
            t0 = time.perf_counter()
            chunk = list(itertools.islice(it, self.batch_size))
            self.stats.read_s += time.perf_counter() - t0
            if not chunk:
                return
            yield self._score_chunk(chunk)

    def _score_chunk(self, chunk: list[Any]) -> list[dict[str, Any]]:
        rows = [self._row(r) for r in chunk]
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
        if todo:
            t0 = time.perf_counter()
            try:
                values = self._score([m for _, m in todo])
                for (row, _), v in zip(todo, values, strict=True):
                    row.update(v)
            except (ValueError, RuntimeError):
                # One bad molecule must not take the batch down: score one by one to isolate it.
                for row, mol in todo:
                    try:
                        row.update(self._score([mol])[0])
                    except (ValueError, RuntimeError) as exc:
                        row["error"] = f"model failed on this molecule: {exc}"
            self.stats.model_s += time.perf_counter() - t0
        for row in rows:
            row["status"] = "error" if row["error"] else "ok"
            self.stats.n_records += 1
            if row["error"]:
                self.stats.n_error += 1
                self.stats.errors.append(f"{row['source']} record {row['id']}: {row['error']}")
            else:
                self.stats.n_ok += 1
        return rows

    def _row(self, rec: Any) -> dict[str, Any]:
        mol = rec.molecule
        row: dict[str, Any] = {c: None for c in self.columns}
        row.update(index=rec.index, id=rec.id, source=rec.source, smiles=rec.smiles or (mol.smiles if mol else ""),
                   n_atoms=mol.n_atoms if mol is not None else None, status="", error=None, warning=None,
                   notes="; ".join(rec.notes) if rec.notes else None)
        return row

    def _prepare(self, mol: Molecule, row: dict[str, Any]) -> Molecule:
        """Domain checks: refuse what the models cannot score, warn about what they rarely saw."""
        from ase.data import chemical_symbols

        unknown = sorted({int(z) for z in mol.z} - self.elements)
        if unknown:
            syms = ", ".join(chemical_symbols[z] for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in sorted(self.elements))
            raise ValueError(f"element(s) {syms} not in the model's training set (knows {known})")
        if mol.charge != 0:
            raise ValueError(f"charged species (total charge {mol.charge:+d}); the model was trained on neutral "
                             "molecules only")
        if mol.radical_electrons:
            raise ValueError(f"radical ({mol.radical_electrons} unpaired electron(s)); the model was trained on "
                             "closed-shell molecules only")
        warnings = []
        for d in self.domain:
            if d.get("max_heavy_atoms") is not None and mol.n_heavy > d["max_heavy_atoms"]:
                warnings.append(f"{mol.n_heavy} heavy atoms; training molecules had at most {d['max_heavy_atoms']}"
                                " (extrapolation)")
                break
        if warnings:
            row["warning"] = "; ".join(warnings)
        if any(m.graph.needs_bonds for m in self.models) and mol.bonds is None:
            from se3mol.io import perceive_bonds

            mol = perceive_bonds(mol)
        return mol

    @torch.no_grad()
    def _score(self, mols: list[Molecule]) -> list[dict[str, float]]:
        per_model = []
        for m in self.models:
            batch = collate(mols, m.graph).to(self.device)
            per_model.append(m.heads.stack(m(batch)).double().cpu())  # [B,D]
        p = torch.stack(per_model)  # [M,B,D]
        if not torch.isfinite(p).all():
            raise ValueError("model produced a non-finite value")
        mean = p.mean(0).tolist()
        std = p.std(0, unbiased=True).tolist() if len(self.models) > 1 else None
        out_rows = []
        for b in range(len(mols)):
            row: dict[str, float] = {}
            col = 0
            for t in self.targets:
                row.update(t.row_values(mean[b][col:col + t.width]))
                if std is not None:
                    row.update({f"{k}_std": v for k, v in t.row_values(std[b][col:col + t.width]).items()})
                col += t.width
            out_rows.append(row)
        return out_rows


def predict(inputs: Sequence[str] | Sequence[Molecule], model: str | Sequence[str] = "qm9-egnn-gap",
            batch_size: int = 64, device: str = "cpu"):
    """Score files (paths) or :class:`Molecule` objects; returns a pandas DataFrame, one row per record.

    >>> df = predict(["examples/molecules.sdf"])   # doctest: +SKIP
    >>> df[["id", "gap_meV"]].head()               # doctest: +SKIP
    """
    import pandas as pd

    specs = [model] if isinstance(model, str | os.PathLike) else list(model)
    p = Predictor.from_specs(specs, batch_size, device)
    if inputs and isinstance(inputs[0], Molecule):
        rows = list(p.predict_molecules(inputs))  # type: ignore[arg-type]
    else:
        rows = list(p.predict_files([str(x) for x in inputs]))
    return pd.DataFrame(rows, columns=p.columns)
