"""What the subcommands share: stderr console, exit codes, error rendering."""

from __future__ import annotations

from typing import Literal, NoReturn

from rich.console import Console

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
    import typer
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
