"""``se3mol evaluate``: score a model against the labels in a file (MAE, RMSE, R^2, parity plot)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from se3mol.cli.common import (
    EXIT_BAD_MODEL,
    EXIT_FAILURE,
    EXIT_INPUT,
    EXIT_OUTPUT,
    EmbedTimeout,
    Fragments,
    Justify,
    MaxAtoms,
    err,
    fail,
    record_limits,
)
from se3mol.limits import Limits


def evaluate(
    model: Annotated[str, typer.Argument(
        help="Shipped model name, checkpoint, run directory, or an ensemble's run directory.")],
    inputs: Annotated[list[Path], typer.Argument(
        help="Labelled molecule files: SDF (data fields), XYZ/extxyz (info keys), CSV of SMILES (columns).")],
    target: Annotated[list[str] | None, typer.Option(
        help="Target of the model to score, NAME or NAME=FIELD when the file calls it otherwise; repeat. "
             "Default: every target of the model. Labels must be in the model's units.")] = None,
    smiles_column: Annotated[str | None, typer.Option(help="CSV column with the SMILES.")] = None,
    id_column: Annotated[str | None, typer.Option(help="CSV column with record ids.")] = None,
    input_format: Annotated[str | None, typer.Option(help="sdf, xyz, csv, smi or an ASE format name.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for 3D embedding of SMILES and 2D records.")] = 0,
    plot: Annotated[Path | None, typer.Option(
        help="Parity plot (PNG); default parity_<first input's name>.png in the current directory.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Also write each molecule's label and prediction (CSV).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    max_atoms: MaxAtoms = Limits.max_atoms,
    embed_timeout: EmbedTimeout = Limits.embed_timeout,
    fragments: Fragments = Limits.fragments,
) -> None:
    """Score MODEL on the labelled molecules of INPUTS: MAE, RMSE and R^2 per target (in its unit), a parity
    plot, and how many records were used and skipped, with the reasons (nothing is dropped silently).
    Exit 0 when scored, 1 if no record is usable, 4 if the model cannot be loaded, 6 if an input is missing."""
    from se3mol.checkpoint import CheckpointError
    from se3mol.evaluation import evaluate_files

    for p in inputs:
        if not os.path.isfile(p):
            fail(f"input file {p} does not exist", EXIT_INPUT)
    try:
        from se3mol.pretrained import resolve_checkpoints

        resolve_checkpoints(model)
    except (FileNotFoundError, CheckpointError) as exc:
        fail(f"cannot load model: {exc}", EXIT_BAD_MODEL)
    from se3mol.limits import use

    try:
        with use(record_limits(max_atoms, embed_timeout, fragments)):
            ev = evaluate_files(model, [str(p) for p in inputs], target, smiles_column=smiles_column,
                                id_column=id_column, input_format=input_format, embed_seed=seed, device=device)
    except CheckpointError as exc:
        fail(f"cannot load model: {exc}", EXIT_BAD_MODEL)
    except ValueError as exc:
        fail(str(exc), EXIT_FAILURE)

    data = ev.data
    err.print(f"data: {data.summary()}", highlight=False, markup=False, soft_wrap=True)
    skipped = [r for r in data.report if r["status"] == "skipped"]
    for r in skipped[:20]:
        err.print(f"  skipped {r['source']} record {r['id']}: {r['reason']}", highlight=False, markup=False)
    if len(skipped) > 20:
        err.print(f"  ... and {len(skipped) - 20} more")
    title = f"{model} on {', '.join(p.name for p in inputs)}" + (
        f" (ensemble of {len(ev.models)})" if len(ev.models) > 1 else "")
    table = Table(title=title)
    columns: list[tuple[str, Justify]] = [("target", "left"), ("MAE", "right"), ("RMSE", "right"), ("R^2", "right"),
                                          ("n", "right")]
    for c, justify in columns:
        table.add_column(c, justify=justify)
    for t in ev.targets:
        m = ev.metrics[t.name]
        table.add_row(f"{t.name} ({t.unit})" if t.unit else t.name, f"{m['mae']:.4g}", f"{m['rmse']:.4g}",
                      f"{m['r2']:.3f}", str(m["n"]))
    err.print(table)

    plot = plot or Path(f"parity_{inputs[0].name.split('.')[0]}.png")
    try:
        from se3mol.training.plots import parity_plot

        parity_plot(ev.pred, ev.ref, ev.targets, plot, label=inputs[0].name)
        err.print(f"parity plot: {plot}")
        if output is not None:
            import pandas as pd

            from se3mol.writers import atomic_write_text

            atomic_write_text(pd.DataFrame(ev.rows()).to_csv(index=False), output)
            err.print(f"labels and predictions: {output}")
    except OSError as exc:
        fail(f"cannot write output: {exc}", EXIT_OUTPUT)
    # stdout: one machine-readable line.
    print(json.dumps({"model": model, "n_records": data.n_records, "n_used": len(data),
                      "n_skipped": sum(r["status"] == "skipped" for r in data.report), "metrics": ev.metrics}))
