"""``se3mol conformers`` (alias ``generate-conformers``) and ``se3mol evaluate-conformers``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from se3mol.cli.common import (
    EXIT_BAD_MODEL,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SOME_RECORDS_FAILED,
    EmbedTimeout,
    Fragments,
    Justify,
    MaxAtoms,
    err,
    fail,
    record_limits,
    silence_stdout,
)
from se3mol.conformers.methods import METHODS
from se3mol.conformers.relax import RELAX_METHODS
from se3mol.limits import Limits

PRESETS = ("default", "fast", "paper")
PRECISIONS = ("auto", "float32", "bfloat16")
# Above this many molecules the summary table lists only the molecules that failed or fell short.
_FULL_SUMMARY_MAX = 20


def conformers(
    inputs: Annotated[list[str], typer.Argument(
        help="SMILES strings, files of SMILES (one per line, optional name after it), or '-' for stdin. "
             "An existing path is read as a file.", show_default=False)],
    n: Annotated[int, typer.Option("-n", "--num-conformers", min=1, help="Conformers per molecule.")] = 10,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="SD file to write (atomically); default stdout.")] = None,
    method: Annotated[str | None, typer.Option(
        help=" or ".join(f"{m.name} ({m.summary})" for m in METHODS.values()) + ". Default: auto; clofnet when "
        "--model is given.", show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        help="Score model for --method clofnet or hybrid: shipped name or .pt path. "
             "Default: conformers-clofnet-qm9 (clofnet), conformers-clofnet-drugs (hybrid).")] = None,
    seed: Annotated[int, typer.Option(help="Base seed; each molecule's seed is derived from it and its SMILES.")] = 0,
    steps: Annotated[int | None, typer.Option(help="Langevin steps per noise level (clofnet, hybrid).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="Sampler settings (clofnet, hybrid): default, fast, or paper (50 levels x 100 steps).")] = None,
    oversample: Annotated[float | None, typer.Option(
        help="Sample this many times -n conformers and keep -n: the least strained (MMFF94 energy as sampled), "
             "then the most diverse; 1 keeps every sample. Default: 3 for clofnet and hybrid, 1 for etkdg.")] = None,
    relax: Annotated[str | None, typer.Option(
        "--relax", metavar="[mmff|xtb]",
        # Help text is rich markup: escaped, or "se3mol[xtb]" in RELAX_METHODS would print as "se3mol".
        help=escape("Finish with minimisation: " + "; ".join(f"{k}: {v}" for k, v in RELAX_METHODS.items()))
             + ". Plain --relax is mmff. Energies and convergence go into each record.", show_default=False)] = None,
    start_sigma: Annotated[float | None, typer.Option(
        help="Noise (Angstrom) each ETKDG conformer is perturbed with before the score model anneals it "
             "(hybrid). Default: 0.08.", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (clofnet, hybrid).")] = "cpu",
    precision: Annotated[str | None, typer.Option(
        help="Score network arithmetic (clofnet, hybrid): float32, bfloat16 (faster where the hardware has it), "
             "or auto (bfloat16 where --device multiplies it natively, else float32). Default: auto.",
        show_default=False)] = None,
    max_atoms: MaxAtoms = Limits.max_atoms,
    embed_timeout: EmbedTimeout = Limits.embed_timeout,
    fragments: Fragments = Limits.fragments,
) -> None:
    """Generate 3D conformers (with hydrogens, bonds from the SMILES) and write them as SDF.

    Every record is titled '<name or SMILES> conf <k>' and carries the input SMILES, conformer number,
    method, seed and sampler settings. Exit 0 if every molecule got its conformers, 3 if some failed (the
    others are still written), 4 if the score model cannot be loaded, 5 if the output cannot be written.
    """
    from se3mol.checkpoint import CheckpointError
    from se3mol.conformers import ModelUnavailableError, generate_conformers, make_method, read_smiles_inputs
    from se3mol.limits import use as use_limits
    from se3mol.runtime import keep_freed_memory
    from se3mol.writers import SDFWriter

    method = method or ("clofnet" if model is not None else "auto")  # a score model of one's own: sample with it
    if method not in METHODS:
        raise typer.BadParameter(f"choose {' or '.join(METHODS)}", param_hint="--method")
    if preset is not None and preset not in PRESETS:
        raise typer.BadParameter(f"choose {', '.join(PRESETS)}", param_hint="--preset")
    options = {"model": model, "preset": preset, "steps": steps, "precision": precision, "start_sigma": start_sigma}
    used = [f"--{name.replace('_', '-')}" for name, v in options.items()
            if v is not None and name not in METHODS[method].options]
    if used:
        takers = [m.name for m in METHODS.values() if all(u[2:].replace("-", "_") in m.options for u in used)]
        raise typer.BadParameter(f"{', '.join(used)} only apply to --method {' or '.join(takers)}",
                                 param_hint=used[0])
    if relax is not None and relax not in RELAX_METHODS:
        raise typer.BadParameter(f"choose {' or '.join(RELAX_METHODS)}", param_hint="--relax")
    if relax == "xtb":
        from se3mol.conformers.xtb import XtbUnavailableError, require_tblite

        try:
            require_tblite()
        except XtbUnavailableError as exc:
            fail(str(exc), EXIT_BAD_MODEL)
    if precision is not None and precision not in PRECISIONS:
        raise typer.BadParameter(f"choose {', '.join(PRECISIONS)}", param_hint="--precision")
    if oversample is not None and not oversample >= 1:
        raise typer.BadParameter("must be at least 1", param_hint="--oversample")
    with use_limits(record_limits(max_atoms, embed_timeout, fragments)):  # also while the inputs are read
        try:
            items = read_smiles_inputs(inputs)
        except OSError as exc:
            fail(f"cannot read input: {exc}", EXIT_INPUT)
        if not items:
            fail("no SMILES in the input (blank lines and # comments are skipped)", EXIT_INPUT)

        if "device" in METHODS[method].options:
            keep_freed_memory()  # a torch sampler's many tensors of a few MiB: 1.35-1.8x faster (se3mol.runtime)
            options["device"] = device
        try:
            generator = make_method(method, **{k: v for k, v in options.items() if k in METHODS[method].options})
        except (ModelUnavailableError, CheckpointError) as exc:  # a crafted or corrupt file too: exit 4, as documented
            fail(str(exc), EXIT_BAD_MODEL)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if oversample is not None:
            generator.oversample = oversample

        results = []
        try:
            with SDFWriter(output) as writer, _Progress(len(items)) as progress:
                for result in generate_conformers(items, generator, n, seed=seed, relax=relax):
                    for mol, conf_id, title, props in result.records():
                        writer.write(mol, conf_id, title, props)
                    results.append(result)
                    progress.done(result)
        except BrokenPipeError:
            silence_stdout()
            raise typer.Exit(EXIT_OK) from None
        except OSError as exc:
            fail(f"cannot write output: {exc}", EXIT_OUTPUT)

        _render_summary(results, n)
        raise typer.Exit(EXIT_SOME_RECORDS_FAILED if any(r.status == "error" for r in results) else EXIT_OK)


class ConformersCommand(TyperCommand):
    """``se3mol conformers``, where ``--relax`` may stand alone (MMFF94, as before it took a value) or name a method.

    Click has no option whose value is optional, so a ``--relax`` not followed by a method name gets ``mmff``
    inserted before parsing: ``--relax CCO`` still reads CCO as a SMILES.
    """

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        args = list(args)
        for i in range(len(args) - 1, -1, -1):
            if args[i] == "--":
                continue
            bare = i + 1 == len(args) or args[i + 1] not in RELAX_METHODS
            if args[i] == "--relax" and "--" not in args[:i] and bare:
                args.insert(i + 1, "mmff")
        return super().parse_args(ctx, args)


class _Progress:
    """One step per molecule on stderr: a rich bar on a terminal, one plain line per molecule otherwise."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.total = total
        self.count = 0
        self.live = err.is_terminal
        self.bar = Progress(TextColumn("conformers"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[current]}"), console=err, transient=True, disable=not self.live)

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        self.task = self.bar.add_task("conformers", total=self.total, current="")
        return self

    def done(self, result) -> None:
        self.count += 1
        label = result.input.label
        if self.live:
            self.bar.update(self.task, advance=1, current=label[:40])
        if result.status == "error":
            err.print(f"[red]error[/] {result.input.where} {label}: {result.error}", highlight=False)
        elif not self.live:
            err.print(f"[{self.count}/{self.total}] {label}: {result.n_conformers} conformer(s) in "
                      f"{result.seconds:.2f} s" + (f" ({'; '.join(result.notes)})" if result.notes else ""),
                      highlight=False, markup=False)

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)


def _render_summary(results, n: int) -> None:
    failed = [r for r in results if r.status == "error"]
    short = [r for r in results if r.status != "ok"]
    written = sum(r.n_conformers for r in results)
    shown = results if len(results) <= _FULL_SUMMARY_MAX else short
    if shown:
        table = Table(title="conformers", title_justify="left", show_lines=False)
        columns: list[tuple[str, Justify]] = [("#", "right"), ("molecule", "left"), ("status", "left"),
                                              ("conformers", "right"), ("seconds", "right"), ("error / notes", "left")]
        for col, justify in columns:
            table.add_column(col, justify=justify, overflow="fold")
        for r in shown:
            style = {"error": "red", "warning": "yellow"}.get(r.status, "")
            table.add_row(str(r.input.index + 1), r.input.label, f"[{style}]{r.status}[/]" if style else r.status,
                          f"{r.n_conformers}/{n}", f"{r.seconds:.2f}", r.error or "; ".join(r.notes))
        err.print(table)
    err.print(f"{len(results) - len(failed)} of {len(results)} molecule(s) done, {written} conformer(s) written; "
              f"{len(failed)} failed", highlight=False)


def evaluate_conformers(
    generated: Annotated[Path, typer.Option("--generated", "-g", help="SD file of generated conformers.",
                                            show_default=False)],
    reference: Annotated[Path, typer.Option("--reference", "-r", help="SD file of reference conformers.",
                                            show_default=False)],
    threshold: Annotated[float, typer.Option(help="COV threshold, Angstrom (0.5 on QM9, 1.25 on GEOM-Drugs).")
                         ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (summary and every molecule) instead of "
                                                         "tables.")] = False,
    match_by: Annotated[str, typer.Option(
        help="How records are grouped into molecules: smiles (canonical, stereo-blind), title, or the name of "
             "an SD data field present in both files.")] = "smiles",
    max_matches: Annotated[int, typer.Option(
        min=1, help="Cap on graph-symmetric atom mappings tried per molecule.")] = 10_000,
) -> None:
    """COV-R / MAT-R and COV-P / MAT-P (mean and median over molecules) with heavy-atom best RMSD, as
    ConfGF and ClofNet report them. Exit 0 if every molecule was evaluated, 3 if some could not be (no
    generated or no reference conformers, unreadable records; they are listed), 6 if a file cannot be read."""
    from se3mol.conformers.metrics import evaluate_conformer_files

    if not threshold > 0:
        raise typer.BadParameter("must be positive", param_hint="--threshold")
    for p in (generated, reference):
        if not p.is_file():
            fail(f"input file {p} does not exist", EXIT_INPUT)
    try:
        result = evaluate_conformer_files(generated, reference, threshold, match_by=match_by,
                                          max_matches=max_matches)
    except OSError as exc:
        fail(f"cannot read input: {exc}", EXIT_INPUT)

    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        _render_evaluation(result)
    for line in result.read_errors[:20]:
        err.print(f"[yellow]unreadable[/] {line}", highlight=False)
    if len(result.read_errors) > 20:
        err.print(f"  ... and {len(result.read_errors) - 20} more unreadable record(s)")
    raise typer.Exit(EXIT_OK if result.complete else EXIT_SOME_RECORDS_FAILED)


def _fmt(v: float | None, percent: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if percent else f"{v:.3f}"


def _render_evaluation(result) -> None:
    from rich.console import Console

    out = Console()
    per = Table(title=f"per molecule (threshold {result.threshold:g} A)", title_justify="left")
    columns: list[tuple[str, Justify]] = [("molecule", "left"), ("gen", "right"), ("ref", "right"),
                                          ("COV-R", "right"), ("MAT-R", "right"), ("COV-P", "right"),
                                          ("MAT-P", "right"), ("status", "left")]
    for col, justify in columns:
        per.add_column(col, justify=justify, overflow="fold")
    for m in result.molecules:
        status = m.status if m.error is None else f"{m.status}: {m.error}"
        if m.max_matches_reached:
            status += f" (atom mappings capped at {result.max_matches})"
        per.add_row(m.smiles, str(m.n_generated), str(m.n_reference), _fmt(m.cov_r, True), _fmt(m.mat_r),
                    _fmt(m.cov_p, True), _fmt(m.mat_p), status)
    out.print(per)
    summary = Table(title=f"over {result.n_evaluated} of {len(result.molecules)} molecule(s)", title_justify="left")
    for col in ("", "COV-R", "MAT-R (A)", "COV-P", "MAT-P (A)"):
        summary.add_column(col, justify="right")
    for stat in ("mean", "median"):
        s = result.summary
        summary.add_row(stat, _fmt(s["cov_r"][stat], True), _fmt(s["mat_r"][stat]), _fmt(s["cov_p"][stat], True),
                        _fmt(s["mat_p"][stat]))
    out.print(summary)
    missing = result.n_missing_generated + result.n_missing_reference + result.n_errors
    if missing:
        out.print(f"not evaluated: {result.n_missing_generated} without generated conformers, "
                  f"{result.n_missing_reference} without reference conformers, {result.n_errors} error(s)",
                  highlight=False)


