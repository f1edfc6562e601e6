"""``se3mol predict``: score molecule files or stdin, one output row per input record."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from se3mol.cli.common import (
    EXIT_BAD_MODEL,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SOME_RECORDS_FAILED,
    EXIT_TERMINATED,
    EmbedTimeout,
    Fragments,
    MaxAtoms,
    err,
    fail,
    record_limits,
    silence_stdout,
)
from se3mol.io import parse_shard
from se3mol.limits import Limits, set_current
from se3mol.pretrained import DEFAULT_MODEL


def predict(
    inputs: Annotated[list[str], typer.Argument(
        help="Molecule files (SDF, XYZ/extxyz, SMILES .smi, CSV/TSV tables with a header and a SMILES "
             "column, or any ASE format; also gzipped); '-' reads stdin. The other columns of a CSV input are "
             "copied into the output, after the predictions.")],
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help=f"Shipped model name or checkpoint path; repeat for an ensemble "
                              f"(mean and _std columns). Default: {DEFAULT_MODEL}.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv, jsonl, or table (a rich table, for people).")] = "csv",
    input_format: Annotated[str | None, typer.Option(
        help="Input format for stdin or unusual extensions: sdf, xyz, smi, csv, or an ASE format name.")] = None,
    smiles_column: Annotated[str | None, typer.Option(
        help="CSV input: the column with the SMILES. Default: the first column named smiles, smi, "
             "canonical_smiles, mol or molecule (any case).")] = None,
    id_column: Annotated[str | None, typer.Option(
        help="CSV input: the column with the record ids (default: <file name>:<row number>).")] = None,
    batch_size: Annotated[int, typer.Option(help="Molecules per model call.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for 3D embedding of SMILES and 2D records.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    shard: Annotated[str | None, typer.Option(
        help="I/N: score only records I, I+N, I+2N, ... (0-based, counted over all inputs in order), so N "
             "processes split the inputs; the index column stays the position in the whole input.")] = None,
    prefetch: Annotated[int, typer.Option(
        help="Batches read and featurised ahead of the model in a background thread (0: no thread).")] = 2,
    profile: Annotated[bool, typer.Option(
        "--profile", help="Print where the time went (reading, featurising, model, writing) on stderr.")] = False,
    keep_fields: Annotated[list[str] | None, typer.Option(
        "--keep-fields", help="Copy this SD data field (or extxyz info key) of each record into a column of its own, "
        "after the predictions; repeat for more. CSV inputs keep all their columns anyway.")] = None,
    max_atoms: MaxAtoms = Limits.max_atoms,
    embed_timeout: EmbedTimeout = Limits.embed_timeout,
    fragments: Fragments = Limits.fragments,
) -> None:
    """Score molecules with a shipped or trained model. Exit 0 if every record was scored, 3 if some
    could not be (their rows say why), 4 if the model cannot be loaded, 5 if the output cannot be written,
    6 if an input file does not exist, 130 if interrupted; 2 for bad usage."""
    from se3mol.checkpoint import CheckpointError
    from se3mol.prediction import Predictor
    from se3mol.writers import RowWriter

    if fmt not in ("csv", "jsonl", "table"):
        raise typer.BadParameter("choose csv, jsonl or table", param_hint="--format")
    if "-" in inputs and input_format is None:
        raise typer.BadParameter("reading stdin ('-') needs --input-format sdf|xyz|smi|csv",
                                 param_hint="--input-format")
    if batch_size < 1:
        raise typer.BadParameter(f"must be at least 1, got {batch_size}", param_hint="--batch-size")
    if prefetch < 0:
        raise typer.BadParameter(f"must be 0 or more, got {prefetch}", param_hint="--prefetch")
    limits = record_limits(max_atoms, embed_timeout, fragments)
    shard_in = None
    if shard is not None:
        try:
            shard_in = parse_shard(shard)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--shard") from None
    for p in inputs:
        if p != "-" and not os.path.exists(p):
            fail(f"input file {p} does not exist", EXIT_INPUT)
    try:
        predictor = Predictor.from_specs(model or [DEFAULT_MODEL], batch_size=batch_size, device=device,
                                         prefetch=prefetch)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        fail(f"cannot load model: {exc}", EXIT_BAD_MODEL)

    stats = predictor.stats
    # A batch system ends jobs with SIGTERM (pre-emption, time limit): clean up as for Ctrl-C.
    previous = _set_sigterm(_raise_terminated)
    previous_limits = set_current(limits)  # process-wide: records are read in a background thread
    chunks = None
    try:
        # Reads the header of CSV inputs, so that predictor.columns has their pass-through columns.
        try:
            chunks = predictor.predict_file_chunks(inputs, input_format=input_format, embed_seed=seed,
                                                   shard=shard_in, smiles_column=smiles_column,
                                                   id_column=id_column, keep_fields=keep_fields or ())
        except ValueError as exc:  # the shard was checked above: an unknown input format
            raise typer.BadParameter(str(exc), param_hint="--input-format") from None
        if fmt == "table":
            _render_table([r for chunk in chunks for r in chunk], predictor.columns)
        else:
            with RowWriter(predictor.columns, output, fmt) as writer, _progress() as bar:
                task = bar.add_task("scoring", total=None, errors=0)
                for chunk in chunks:
                    t0 = time.perf_counter()
                    writer.write(chunk)  # flushed per batch: a reader down the pipe sees rows as they come
                    stats.write_s += time.perf_counter() - t0
                    bar.update(task, advance=len(chunk), errors=stats.n_error)
                t0 = time.perf_counter()
            stats.write_s += time.perf_counter() - t0  # the final fsync and rename
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
        silence_stdout()
        raise typer.Exit(EXIT_OK) from None
    except (KeyboardInterrupt, _Terminated) as exc:
        if output is None:
            silence_stdout()  # the interrupted pipe may be gone too
        what, code = ("terminated", EXIT_TERMINATED) if isinstance(exc, _Terminated) else ("interrupted",
                                                                                          EXIT_INTERRUPTED)
        fail(f"{what} after {stats.n_records} record(s)"
             + (f"; {output} was not written" if output is not None else ""), code)
    except OSError as exc:
        if output is None:
            silence_stdout()  # or Python's own flush at exit fails again, with a traceback
        fail(f"cannot write output: {_os_message(exc)}"
             + (f"; {output} was not written" if output is not None else ""), EXIT_OUTPUT)
    finally:
        if chunks is not None:
            chunks.close()  # stops the featurising thread now, not at interpreter exit (see se3mol.prediction)
        _set_sigterm(previous)
        set_current(previous_limits)

    s = stats
    err.print(f"scored {s.n_ok} of {s.n_records} record(s); {s.n_error} error(s)", highlight=False)
    for line in s.errors[:20]:
        err.print(f"  {line}", highlight=False, markup=False)
    if s.n_error > 20:
        err.print(f"  ... and {s.n_error - 20} more (see the error column)")
    if profile:
        err.print(s.summary(), highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_SOME_RECORDS_FAILED if s.n_error else EXIT_OK)


def _progress():
    """Records scored so far, on stderr, only when stderr is a terminal (pipelines and logs stay clean)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.completed} records scored, {task.fields[errors]} errors"),
                    TimeElapsedColumn(), console=err,
                    disable=not err.is_terminal, transient=True)


def _render_table(rows: list[dict], columns: list[str]) -> None:
    """A rich table for people: the predictions with 4 significant digits; on a terminal, at its width,
    elsewhere (a pipe, a file, ``make demo`` in CI) at the table's natural width, so no column is squashed."""
    import sys

    from rich.console import Console

    shown = [c for c in columns if c not in ("source", "notes", "warning")]
    table = Table(show_lines=False)
    for c in shown:
        numeric = c in ("index", "n_atoms") or any(isinstance(r.get(c), float) for r in rows)
        table.add_column(c, justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in shown))
    Console(width=None if sys.stdout.isatty() else 1000).print(table)


def _cell(value: object) -> str:
    """``1.379``, ``9438``, ``-33074``: four significant digits, never an exponent for QM9-sized values."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _os_message(exc: OSError) -> str:
    if exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the output is cleaned up as on Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def _set_sigterm(handler):
    """Install a SIGTERM handler and return the previous one (only the main thread may; else a no-op)."""
    import threading

    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)
