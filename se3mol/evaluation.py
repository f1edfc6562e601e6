"""Score a trained model against the labels in a file: MAE, RMSE and R^2 per target, in its unit.

What ``se3mol evaluate`` runs. The file is read as training reads it (:class:`~se3mol.data.files.LabelledDataset`),
so a record that cannot be scored is reported with its reason, never dropped in silence; a record that lacks
one target's label still counts for the others.

>>> ev = evaluate_files("runs/sol", ["test.sdf"])      # doctest: +SKIP
>>> ev.metrics["logS"]["mae"]                           # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from se3mol.data.files import LabelledDataset, attach_fingerprints
from se3mol.io import read_records
from se3mol.targets import Target


@dataclass
class Evaluation:
    """What :func:`evaluate_files` measured.

    Attributes:
        targets: the model's targets that were evaluated.
        metrics: per target ``{"mae", "rmse", "r2", "n"}`` in the target's unit.
        data: the labelled molecules read (its ``report`` holds every skipped record and missing label).
        pred: predictions ``[M,D]`` (the mean over an ensemble's members); ``std``: their spread or ``None``.
        ref: labels ``[M,D]``, NaN where missing.
        models: checkpoint paths used.
    """

    targets: list[Target]
    metrics: dict[str, dict[str, float]]
    data: LabelledDataset
    pred: Tensor
    ref: Tensor
    std: Tensor | None
    models: list[str]

    def rows(self) -> list[dict[str, Any]]:
        """One row per molecule used: id, source, and per target the label, the prediction (and std)."""
        out = []
        for k in range(len(self.data)):
            row: dict[str, Any] = {"id": self.data.ids[k], "source": self.data.sources[k],
                                   "smiles": self.data.smiles[k]}
            for j, t in enumerate(self.targets):
                ref = float(self.ref[k, j])
                row[f"{t.column}_label"] = ref if ref == ref else None
                row[f"{t.column}_pred"] = float(self.pred[k, j])
                if self.std is not None:
                    row[f"{t.column}_std"] = float(self.std[k, j])
            out.append(row)
        return out


def parse_field_map(specs: Sequence[str] | None, model_targets: Sequence[Target]) -> dict[str, str]:
    """``NAME`` or ``NAME=FIELD`` -> {target name: field to read its label from}; all targets if none given."""
    known = {t.name for t in model_targets}
    if not specs:
        return {t.name: t.name for t in model_targets}
    out = {}
    for spec in specs:
        name, _, fld = spec.partition("=")
        name = name.split(":")[0].strip()
        if name not in known:
            raise ValueError(f"the model has no target {name!r}; it predicts {', '.join(sorted(known))}")
        out[name] = fld.strip() or name
    return out


@torch.no_grad()
def evaluate_files(model: str | os.PathLike | Sequence[str | os.PathLike], paths: Sequence[str | os.PathLike],
                   targets: Sequence[str] | None = None, *, smiles_column: str | None = None,
                   id_column: str | None = None, input_format: str | None = None, embed_seed: int = 0,
                   device: str = "cpu", batch_size: int = 256) -> Evaluation:
    """Evaluate a model (shipped name, checkpoint, run directory, or an ensemble's directory; or a list of
    them, averaged) on the labelled molecules of ``paths``. A shipped ensemble's ``std`` is calibrated as
    ``se3mol predict`` writes it (its card's ``std_scale``).

    ``targets``: target names of the model to evaluate, each optionally ``NAME=FIELD`` when the file's field
    has another name; default all of the model's targets, read from fields of the same names. Labels must be
    in the model's units (``se3mol models`` and the model card say which).

    Raises:
        ValueError: if a file does not exist, or no record has a usable label.
    """
    from se3mol.checkpoint import load_model
    from se3mol.data.qm9 import attach_bonds
    from se3mol.pretrained import resolve_checkpoints, std_scale
    from se3mol.training.metrics import regression_metrics

    specs = [model] if isinstance(model, str | os.PathLike) else list(model)
    ckpts = [p for s in specs for p in resolve_checkpoints(s)]
    models = [load_model(p, device)[0] for p in ckpts]
    names = [[t.name for t in m.targets] for m in models]
    if any(n != names[0] for n in names):
        raise ValueError(f"ensemble members predict different targets: {names}")
    fields = parse_field_map(targets, models[0].targets)
    chosen = [t for t in models[0].targets if t.name in fields]
    scalar = [t for t in chosen if t.width != 1]
    if scalar:
        raise ValueError(f"evaluate scores scalar targets; {scalar[0].name} is a {scalar[0].kind}")
    for p in paths:
        if not os.path.isfile(p):
            raise ValueError(f"data file {p} does not exist")
    def renamed():
        for rec in read_records([os.fspath(p) for p in paths], input_format, embed_seed=embed_seed,
                                smiles_column=smiles_column, id_column=id_column):
            if rec.molecule is not None:
                rec.properties = {**rec.properties, **{t: rec.properties.get(f) for t, f in fields.items()}}
            yield rec

    elements = set.intersection(*(set(m.elements) for m in models))
    data = LabelledDataset.from_records(renamed(), [replace(t) for t in chosen], sorted(elements),
                                        check_duplicates=False,
                                        neutral_only=not all(m.charge_input for m in models))
    if len(data) == 0:
        raise ValueError(f"no record of {', '.join(map(str, paths))} has a usable label ({data.summary()})")
    prints = [m.fingerprint for m in models if m.fingerprint]
    if prints:
        if any(p != prints[0] for p in prints):
            raise ValueError(f"ensemble members take different fingerprints: {prints}")
        attach_fingerprints(data, prints[0])
    graphs = {m.graph for m in models}
    if any(g.needs_bonds for g in graphs):
        attach_bonds(data, verbose=False)
    idx = torch.arange(len(data))
    per_model = []
    for m in models:
        cols = []
        for k in range(0, len(data), batch_size):
            b = data.batch(idx[k:k + batch_size], m.graph).to(device)
            out = m(b)
            cols.append(torch.stack([out[t.name].reshape(-1) for t in chosen], 1).double().cpu())
        per_model.append(torch.cat(cols))
    every = torch.stack(per_model)  # [K,M,D]
    pred = every.mean(0)
    std = every.std(0, unbiased=True) if len(models) > 1 else None
    scale = std_scale(specs[0]) if len(specs) == 1 else None
    if std is not None and scale:  # a shipped ensemble: its calibrated spread, as predict writes it
        std = std * torch.tensor([scale.get(t.name, 1.0) for t in chosen], dtype=std.dtype)
    ref = data.y.double()
    return Evaluation(chosen, regression_metrics(pred, ref, chosen), data, pred, ref, std, [str(c) for c in ckpts])
