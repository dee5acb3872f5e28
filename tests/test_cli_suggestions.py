"""Every command the tool suggests parses, and text in square brackets is printed, not eaten as markup."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import rnnlab
from rnnlab.cli import app, fail

SOURCE = Path(rnnlab.__file__).parent
#: a command in backquotes inside the package's messages, docstrings and report text
SUGGESTED = re.compile(r"`(rnnlab [^`]+)`")


def suggested_commands() -> list[str]:
    commands = set()
    for path in SOURCE.rglob("*.py"):
        commands.update(match.group(1) for match in SUGGESTED.finditer(path.read_text(encoding="utf-8")))
    return sorted(command for command in commands if "..." not in command)


def test_the_package_suggests_commands():
    assert len(suggested_commands()) >= 10  # the scan finds them (else the test below checks nothing)


@pytest.mark.parametrize("command", suggested_commands())
def test_every_suggested_command_parses(command):
    arguments = shlex.split(command)[1:]
    # --help last: every option before it must be known (an unknown one is an error at parse time)
    result = CliRunner().invoke(app, [*arguments, "--help"])
    assert result.exit_code == 0, f"`{command}`: {result.output}"


def test_square_brackets_in_an_error_are_printed(capsys):
    with pytest.raises(typer.Exit):
        fail('--executor ray needs Ray: pip install -c constraints.txt "rnnlab[ray]"')
    assert '"rnnlab[ray]"' in capsys.readouterr().err
