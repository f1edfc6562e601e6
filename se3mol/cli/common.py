"""What the subcommands share: stderr console, exit codes, error rendering."""

from __future__ import annotations

from typing import Annotated, Literal, NoReturn

import typer
from rich.console import Console

from se3mol.limits import FRAGMENT_POLICIES, Limits

#: How a rich table column is justified.
Justify = Literal["left", "right"]

# Documented exit codes (README "Exit status").
EXIT_OK = 0
EXIT_FAILURE = 1  # a check failed (check-equivariance), or an unexpected error
EXIT_USAGE = 2  # bad command-line usage (Typer's own code)
EXIT_SOME_RECORDS_FAILED = 3  # predict: at least one record could not be scored (rows still written)
EXIT_BAD_MODEL = 4  # the model or checkpoint could not be loaded (corrupt, foreign, other format)
EXIT_OUTPUT = 5  # the output could not be written (unwritable path, disk full)
EXIT_INPUT = 6  # an input file could not be opened at all
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
EXIT_TERMINATED = 143  # SIGTERM, e.g. a batch system ending the job (128 + SIGTERM)

err = Console(stderr=True)


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` on stderr (as text: brackets in it are not markup) and exit with ``code``."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # no hard wraps in logs
    raise typer.Exit(code)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's own flush at exit does not fail again on a closed pipe."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


# The limits and fragment policy of every command that reads molecules (se3mol.limits); one definition each.
MaxAtoms = Annotated[int, typer.Option(
    "--max-atoms", min=1, help="Atoms per record (hydrogens included) above which a record is an error row, "
    "checked before any costly work; SMILES longer than 10 characters per atom too.")]
EmbedTimeout = Annotated[int, typer.Option(
    "--embed-timeout", min=1, help="Seconds RDKit's 3D embedding may spend per attempt on one molecule (2 attempts).")]
Fragments = Annotated[str, typer.Option(
    "--fragments", help="Records of several fragments (salts, hydrates, mixtures): largest (keep the largest "
    "organic fragment, neutralised where its counter-ions were removed; the notes name what went), all, or error.")]


def fragments_option(fragments: str) -> str:
    """``--fragments``, or a usage error naming the choices."""
    if fragments not in FRAGMENT_POLICIES:
        raise typer.BadParameter(f"choose {', '.join(FRAGMENT_POLICIES)}", param_hint="--fragments")
    return fragments


def record_limits(max_atoms: int, embed_timeout: int, fragments: str) -> Limits:
    """The :class:`~se3mol.limits.Limits` of the options, or a usage error naming the bad one."""
    return Limits(max_atoms=max_atoms, embed_timeout=embed_timeout, fragments=fragments_option(fragments))
