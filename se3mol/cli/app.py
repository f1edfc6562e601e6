"""The ``se3mol`` command: joins the subcommands, one module each."""

from __future__ import annotations

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


@app.callback()
def _root() -> None:
    """SE(3)-equivariant neural networks for molecules: train, predict, generate conformers, check equivariance."""


def main() -> None:
    app()
