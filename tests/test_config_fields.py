"""A flag is a field: the options of a command generated from a dataclass, and read back into it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rnnlab.config_fields import flag, flag_fields, flag_name, given_fields, with_config_options


@dataclass
class Toy:
    num_layers: int | None = field(default=None, metadata=flag("Stacked layers.", old=("--layers",), min=1))
    name: str = field(default="toy", metadata=flag("A name.", short="-n"))
    wide: bool | None = field(default=None, metadata=flag("Both directions.", negatable=True))
    extras: dict[str, Any] = field(default_factory=dict, metadata=flag("Not a flag.", cli=False))


def toy_app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @with_config_options(Toy)
    def run(quiet: bool = typer.Option(False, "--quiet"), **values: Any) -> None:
        seen.append((given_fields(Toy, values), quiet, values))

    return app


def parse(*args: str) -> tuple[int, Any]:
    seen: list = []
    result = CliRunner().invoke(toy_app(seen), list(args), env={"COLUMNS": "240"})
    return result, (seen[0] if seen else None)


def test_each_field_is_a_flag_of_its_name_and_help():
    result, _ = parse("--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for name, words in (("--num-layers", "Stacked layers."), ("--name", "A name. (default: toy)")):
        assert name in text and words in text
    assert "--no-wide" in text and "-n" in text
    assert "--layers " not in text and "--extras" not in text  # old spellings hidden; cli=False absent


def test_given_fields_are_only_those_given_and_hand_written_flags_stay():
    _, (given, quiet, rest) = parse("--num-layers", "2", "-n", "x", "--no-wide", "--quiet")
    assert given == {"num_layers": 2, "name": "x", "wide": False} and quiet is True and rest == {}
    _, (given, _, _) = parse()
    assert given == {}


def test_an_old_spelling_gives_what_the_new_one_gives():
    assert parse("--layers", "3")[1][0] == parse("--num-layers", "3")[1][0] == {"num_layers": 3}
    assert parse("--num-layers", "3", "--layers", "5")[1][0] == {"num_layers": 3}  # the new one wins


def test_bounds_are_checked_by_the_parser():
    result, seen = parse("--num-layers", "0")
    assert result.exit_code == 2 and seen is None and "greater than or equal to 1" in result.output


def test_a_field_without_flag_metadata_is_refused():
    @dataclass
    class Bare:
        size: int = 1

    with pytest.raises(TypeError, match=r"Bare.size has no flag\(...\) metadata"):
        flag_fields(Bare)


@pytest.mark.parametrize("cls_path", ["rnnlab.train.config:TrainConfig", "rnnlab.lab.grid:CompareConfig"])
def test_every_configuration_field_says_its_flag(cls_path):
    import importlib

    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    flagged = {item.name for item, _ in flag_fields(cls)}  # raises if a field lacks its flag(...)
    assert flagged <= {item.name for item in fields(cls)} and flag_name("batch_size") == "--batch-size"
