"""``se3mol check-equivariance``: rotate, reflect, translate and permute molecules; compare the outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from se3mol.cli.common import EXIT_BAD_MODEL, EXIT_FAILURE, EXIT_INPUT, fail
from se3mol.nn.registry import CONTROLS, model_names

if TYPE_CHECKING:
    from se3mol.equivariance import EquivarianceReport


def _model_help() -> str:
    """Names only: describing each family would import them all (e3nn's cost a second); `se3mol models` does."""
    families = ", ".join(f"{n} (control, not equivariant)" if n in CONTROLS else n
                         for n in model_names(include_controls=True))
    return ("Registry name, checked as a freshly initialised network with targets gap and mu (seeded by "
            f"--seed): {families} (described by `se3mol models`). Or a shipped model name or checkpoint path.")


_STATUS_STYLE = {"pass": "[green]pass[/]", "FAIL": "[bold red]FAIL[/]",
                 "not expected": "[yellow]not expected[/]"}


def check_equivariance(
    model: Annotated[str, typer.Option(help=_model_help())] = "egnn",
    input_: Annotated[Path | None, typer.Option(
        "--input", help="Molecules to check on (SDF, XYZ, ...); default: five built-in ones of 3-14 atoms.")
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Random transformations of each kind.")] = 3,
    seed: Annotated[int, typer.Option(
        help="Seed of the transformations and of a fresh network's weights.")] = 0,
    tolerance: Annotated[float, typer.Option(
        help="Largest relative error that passes (the model runs in float64).")] = 1e-9,
    json_: Annotated[bool, typer.Option(
        "--json", help="Print the report as JSON instead of a table.")] = False,
) -> None:
    """Check that a model's outputs are invariant or equivariant under rotations, reflections,
    translations and atom permutations. Exits 0 if every check passes, 1 if any fails."""
    if not tolerance > 0:
        raise typer.BadParameter(f"must be positive, got {tolerance}", param_hint="--tolerance")
    from se3mol.equivariance import check, default_molecules, model_to_check
    from se3mol.graph import collate
    from se3mol.io import read_molecules

    try:
        net = model_to_check(model, seed=seed)
    except (FileNotFoundError, ValueError, OSError) as exc:
        fail(f"cannot load model {model!r}: {exc}", EXIT_BAD_MODEL)

    try:
        if input_ is None:
            mols = default_molecules()
        else:
            mols = read_molecules(str(input_))  # validated; raises ValueError naming a bad record
            if not mols:
                raise ValueError(f"no molecules in {input_}")
        if net.graph.needs_bonds:
            from se3mol.chem import perceive_bonds

            mols = [m if m.bonds is not None else perceive_bonds(m) for m in mols]
        batch = collate(mols, net.graph)
        spec = getattr(net, "fingerprint", None)
        if spec:  # the model's 2D input: each molecule's fingerprint, from its SMILES (invariant by construction)
            import torch

            from se3mol.chem import morgan_matrix

            if not all(m.smiles for m in mols):
                raise ValueError("this model takes each molecule's 2D fingerprint, and some molecules have no SMILES")
            batch = batch.replace(mol_attr=torch.from_numpy(morgan_matrix([m.smiles for m in mols], spec)))
        with_inputs = getattr(net, "with_default_inputs", None)
        if with_inputs is not None:  # conditioning inputs (a score model's noise level)
            batch = with_inputs(batch)
        report = check(net, batch, trials=trials, seed=seed, tolerance=tolerance)
    except (OSError, ValueError, ImportError) as exc:
        fail(str(exc), EXIT_INPUT)

    out = Console(highlight=False)
    if json_:
        print(json.dumps({"model": str(model), **report.to_dict()}, indent=2, allow_nan=False))
    else:
        table = Table(title=f"Equivariance of {model} ({report.dtype}, {report.n_molecules} molecules of "
                            f"{min(report.n_atoms)}-{max(report.n_atoms)} atoms, {report.trials} trial(s))")
        for col in ("output", "kind", "transform"):
            table.add_column(col)
        table.add_column("max abs error", justify="right")
        table.add_column("max rel error", justify="right")
        table.add_column("status")
        for r in report.rows:
            table.add_row(r.output, r.kind, r.transform, f"{r.max_abs_error:.1e}", f"{r.max_rel_error:.1e}",
                          _STATUS_STYLE[r.status])
        out.print(table)
        out.print(_summary(report))
    if not report.passed:
        raise typer.Exit(EXIT_FAILURE)


def _summary(report: EquivarianceReport) -> str:
    checked = [r for r in report.rows if r.expected]
    skipped = len(report.rows) - len(checked)
    note = (f" ({skipped} reflection rows not expected: the model is not reflection-equivariant)"
            if skipped else "")
    if report.passed:
        return (f"[bold green]PASSED[/]: all {len(checked)} checks within relative tolerance "
                f"{report.tolerance:g}{note}")
    return (f"[bold red]FAILED[/]: {len(report.failures)} of {len(checked)} checks exceed relative tolerance "
            f"{report.tolerance:g}{note}")
