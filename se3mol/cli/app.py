"""The ``se3mol`` command: joins the subcommands, one module each."""

from __future__ import annotations

from typing import Annotated

import typer

from se3mol.cli.check_equivariance import check_equivariance
from se3mol.cli.conformers import ConformersCommand, conformers, evaluate_conformers
from se3mol.cli.evaluate import evaluate
from se3mol.cli.models import models
from se3mol.cli.predict import predict
from se3mol.cli.train import train

app = typer.Typer(
    name="se3mol",
    help="SE(3)-equivariant neural networks for molecules: train, predict, generate conformers, check equivariance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train")(train)
app.command("predict")(predict)
app.command("evaluate")(evaluate)
app.command("models")(models)
app.command("check-equivariance")(check_equivariance)
app.command("conformers", cls=ConformersCommand)(conformers)
app.command("generate-conformers", cls=ConformersCommand, help="Alias of `se3mol conformers`.")(conformers)
app.command("evaluate-conformers")(evaluate_conformers)


def _print_version(value: bool) -> None:
    if value:
        import sys

        from se3mol._version import __version__

        print(f"se3mol {__version__} (Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print se3mol's version and exit.")] = False,
          ) -> None:
    """SE(3)-equivariant neural networks for molecules: train, predict, generate conformers, check equivariance."""


def main() -> None:
    app()
