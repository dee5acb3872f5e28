"""A flag is a field: the command line's options are generated from the configuration dataclasses.

Each field of a configuration (``TrainConfig``, ``CompareConfig``) says how it appears on the
command line in ``dataclasses.field(metadata=flag(...))``: its help text, a short flag, bounds,
the old spellings still accepted. ``option_parameters`` turns the fields into typer options named
after them (``batch_size`` → ``--batch-size``), and ``given_fields`` reads the parsed values back
into field values, so a new field is a new flag with nothing copied by hand.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

#: The key of ``dataclasses.field(metadata=...)`` that holds a field's ``Flag``.
FLAG = "rnnlab.flag"


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one configuration field appears on the command line."""

    help: str | Callable[[], str]  # a callable for text read from a registry (the task names)
    short: str | None = None  # e.g. "-o"
    min: float | None = None
    max: float | None = None
    cli: bool = True  # False: the field has no flag (set from Python, or by a hand-written flag)
    negatable: bool = False  # a bool flag with its --no- form (a None default lets the task decide)
    required: bool = False
    #: earlier spellings of the flag, still accepted for one release and hidden from --help
    old: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.help() if callable(self.help) else self.help


def flag(
    help: str | Callable[[], str],
    *,
    short: str | None = None,
    min: float | None = None,
    max: float | None = None,
    cli: bool = True,
    negatable: bool = False,
    required: bool = False,
    old: tuple[str, ...] = (),
) -> dict[str, Flag]:
    """The ``metadata`` of a configuration field: ``field(default=None, metadata=flag("Epochs."))``."""
    return {FLAG: Flag(help, short, min, max, cli, negatable, required, old)}


def flag_name(field_name: str) -> str:
    """``batch_size`` → ``--batch-size``: the flag is the field's name."""
    return "--" + field_name.replace("_", "-")


def flag_fields(cls: type) -> list[tuple[dataclasses.Field, Flag]]:
    """The fields of ``cls`` that have a flag; a field without ``flag(...)`` metadata is an error."""
    found = []
    for item in dataclasses.fields(cls):
        spec = item.metadata.get(FLAG)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{item.name} has no flag(...) metadata: say its help, or cli=False")
        if spec.cli:
            found.append((item, spec))
    return found


def option_parameters(cls: type) -> list[inspect.Parameter]:
    """One keyword parameter with a ``typer.Option`` per flagged field (plus a hidden one per old spelling).

    Every option defaults to ``None``, so a field not given keeps the dataclass's default (which
    ``--help`` shows); ``given_fields`` drops the ``None`` s.
    """
    import typer

    hints = typing.get_type_hints(cls)
    parameters = []
    for item, spec in flag_fields(cls):
        kind = _option_type(hints[item.name], f"{cls.__name__}.{item.name}")
        name = flag_name(item.name)
        declarations = [f"{name}/--no-{name[2:]}" if spec.negatable else name]
        if spec.short:
            declarations.append(spec.short)
        shown = _shown_default(item, kind)
        option = typer.Option(
            ... if spec.required else None,
            *declarations,
            help=spec.text + (f" (default: {shown})" if shown is not None else ""),
            min=spec.min,
            max=spec.max,
            show_default=False,
        )
        parameters.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
        for old in spec.old:
            hidden = typer.Option(None, old, hidden=True, min=spec.min, max=spec.max)
            parameters.append(
                inspect.Parameter(_old_parameter(old), inspect.Parameter.KEYWORD_ONLY, default=hidden, annotation=kind)
            )
    return parameters


def given_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The field values among a command's parsed ``values`` (removed from it), ``None`` s left out.

    An old spelling counts when the new one is not given.
    """
    given = {}
    for item, spec in flag_fields(cls):
        value = values.pop(item.name, None)
        for old in spec.old:
            earlier = values.pop(_old_parameter(old), None)
            if value is None:
                value = earlier
        if value is not None:
            given[item.name] = value
    return given


def with_config_options(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of ``cls``'s fields, before its own hand-written ones.

    The command takes ``**values``; typer reads the options from its ``__signature__``.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        own = [
            parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for parameter in signature.parameters.values()
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        generated = option_parameters(cls)
        clash = {p.name for p in own} & {p.name for p in generated}
        if clash:
            raise TypeError(f"{command.__name__}: hand-written options repeat the fields {sorted(clash)}")
        command.__signature__ = signature.replace(parameters=[*generated, *own])  # type: ignore[attr-defined]
        return command

    return decorate


def _old_parameter(old: str) -> str:
    return "old_" + old.lstrip("-").replace("-", "_")


def _option_type(hint: Any, where: str) -> type:
    """``int | None`` → ``int``: the type typer parses (a flag left out is ``None`` anyway)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
        if len(kinds) == 1:
            hint = kinds[0]
    if hint in (str, int, float, bool):
        return hint
    raise TypeError(f"{where}: a flag takes str, int, float or bool; got {hint!r} (give it cli=False)")


def _shown_default(item: dataclasses.Field, kind: type) -> str | None:
    """The field's default as ``--help`` shows it (the options' own default is ``None``: "not given")."""
    if item.default is dataclasses.MISSING or item.default is None or kind is bool:
        return None
    return str(item.default)
