"""``se3mol predict``: score molecule files or stdin, one output row per input record."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from se3mol.cli.common import (
    EXIT_BAD_MODEL,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SOME_RECORDS_FAILED,
    err,
    fail,
)
from se3mol.pretrained import DEFAULT_MODEL


def predict(
    inputs: Annotated[list[str], typer.Argument(
        help="Molecule files (SDF, XYZ/extxyz, SMILES .smi, or any ASE format); '-' reads stdin.")],
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help=f"Shipped model name or checkpoint path; repeat for an ensemble "
                              f"(mean and _std columns). Default: {DEFAULT_MODEL}.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv, jsonl, or table (a rich table, for people).")] = "csv",
    input_format: Annotated[str | None, typer.Option(
        help="Input format for stdin or unusual extensions: sdf, xyz, smi, or an ASE format name.")] = None,
    batch_size: Annotated[int, typer.Option(help="Molecules per model call.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for 3D embedding of SMILES and 2D records.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Score molecules with a shipped or trained model. Exit 0 if every record was scored, 3 if some
    could not be (their rows say why), 4 if the model cannot be loaded, 5 if the output cannot be written."""
    from se3mol.predict import Predictor
    from se3mol.training.checkpoint import CheckpointError
    from se3mol.writers import RowWriter

    if fmt not in ("csv", "jsonl", "table"):
        raise typer.BadParameter("choose csv, jsonl or table", param_hint="--format")
    if "-" in inputs and input_format is None:
        raise typer.BadParameter("reading stdin ('-') needs --input-format sdf|xyz|smi", param_hint="--input-format")
    for p in inputs:
        if p != "-" and not os.path.exists(p):
            fail(f"input file {p} does not exist", EXIT_INPUT)
    try:
        predictor = Predictor.from_specs(model or [DEFAULT_MODEL], batch_size=batch_size, device=device)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        fail(f"cannot load model: {exc}", EXIT_BAD_MODEL)

    try:
        if fmt == "table":
            rows = list(predictor.predict_files(inputs, input_format=input_format, embed_seed=seed))
            _render_table(rows, predictor.columns)
        else:
            with RowWriter(predictor.columns, output, fmt) as writer, _progress() as bar:
                task = bar.add_task("scoring", total=None, errors=0)
                for chunk in predictor.predict_file_chunks(inputs, input_format=input_format, embed_seed=seed):
                    writer.write(chunk)
                    bar.update(task, advance=len(chunk), errors=predictor.stats.n_error)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
        _silence_stdout()
        raise typer.Exit(EXIT_OK) from None
    except OSError as exc:
        fail(f"cannot write output: {exc}", EXIT_OUTPUT)

    s = predictor.stats
    err.print(f"scored {s.n_ok} of {s.n_records} record(s); {s.n_error} error(s)", highlight=False)
    for line in s.errors[:20]:
        err.print(f"  {line}", highlight=False, markup=False)
    if len(s.errors) > 20:
        err.print(f"  ... and {len(s.errors) - 20} more (see the error column)")
    raise typer.Exit(EXIT_SOME_RECORDS_FAILED if s.n_error else EXIT_OK)


def _progress():
    """Records scored so far, on stderr, only when stderr is a terminal (pipelines and logs stay clean)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.completed} records scored, {task.fields[errors]} errors"),
                    TimeElapsedColumn(), console=err,
                    disable=not err.is_terminal, transient=True)


def _render_table(rows: list[dict], columns: list[str]) -> None:
    from rich.console import Console

    shown = [c for c in columns if c not in ("source", "notes", "warning")]
    table = Table(show_lines=False)
    for c in shown:
        table.add_column(c, justify="right" if c in ("index", "n_atoms") or c.endswith(("meV", "_D")) else "left",
                         overflow="fold")
    for r in rows:
        table.add_row(*("" if r.get(c) is None else (f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]))
                        for c in shown))
    Console().print(table)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
