"""Help texts: Typer renders them as rich markup, where '[xtb]' is a style tag and vanishes unless escaped."""

import re

import click
import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from se3mol.cli.app import app

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands


def test_conformers_help_names_the_xtb_extra():
    # Issue 31 #15: the help said `pip install 'se3mol'`, rich markup having swallowed "[xtb]".
    r = runner.invoke(app, ["conformers", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0
    assert "pip install 'se3mol[xtb]'" in re.sub(r"[\s│]+", " ", r.stdout)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_texts_survive_rich_markup(name):
    command: click.Command = COMMANDS[name]
    texts = {"(command)": command.help or ""} | {p.name: getattr(p, "help", None) or "" for p in command.params}
    for param, text in texts.items():
        meant = text.replace("\\[", "[")  # an escaped bracket prints as a bracket
        assert Text.from_markup(text).plain == meant, f"se3mol {name} {param}: markup ate part of {text!r}"


def test_version():
    from se3mol._version import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith(f"se3mol {__version__} ")
