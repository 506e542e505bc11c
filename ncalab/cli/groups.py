"""Command groups whose sub-commands are declared in a table and imported only when one runs.

A table maps each sub-command's name to (module, its Typer app or command function, the help line
the group's help shows). The group's help lists the commands from the table alone, so `ncalab
--help` or `ncalab runs --help` imports none of their modules, and running one command imports
its module only: a command that needs torch or matplotlib sits in a module of its own, with its
imports at the top. tests/test_layers.py checks each table line against the command's own help.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

import click
import typer
from typer.core import TyperCommand, TyperGroup

# name -> (module, attribute, help line)
CommandTable = dict[str, tuple[str, str, str]]


def load_command(table: CommandTable, name: str) -> click.Command:
    """The click command of one sub-command, made by Typer as `app.command(name)` or
    `app.add_typer(..., name=name)` on its group would make it."""
    module, attribute, _ = table[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(add_completion=False)
    if not isinstance(target, typer.Typer):
        holder.command(name)(target)
        return typer.main.get_command(holder)  # one command: Typer makes it, not a group
    holder.add_typer(target, name=name)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


class _LazyCommands(MutableMapping[str, click.Command]):
    """A group's sub-commands by name, each made when first looked up."""

    def __init__(self, table: CommandTable, made: Mapping[str, Any] | None = None) -> None:  # Any: click or typer._click
        self._table = table
        self._made: dict[str, click.Command] = dict(made or {})

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._made:
            if name not in self._table:
                raise KeyError(name)
            self._made[name] = load_command(self._table, name)
        return self._made[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._made[name] = command

    def __delitem__(self, name: str) -> None:
        del self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._table, *(n for n in self._made if n not in self._table)])

    def __len__(self) -> int:
        return len(set(self._table) | set(self._made))


_LISTING = "ncalab.listing_commands"  # set in the context while a group's help lists its commands


class LazyGroup(TyperGroup):
    """A group whose sub-commands come from `table`, each imported when it is run; its help lists
    them by the table's help lines, importing none. Commands registered on the group's Typer app
    itself follow the table's. Declare one with `typer.Typer(cls=lazy_group(TABLE), ...)`."""

    table: ClassVar[CommandTable] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.table, self.commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # the names alone (TyperGroup's reads every command)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if ctx.meta.get(_LISTING) and cmd_name in self.table:
            return TyperCommand(name=cmd_name, help=self.table[cmd_name][2])  # only its name and help are read
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        ctx.meta[_LISTING] = True
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.meta[_LISTING] = False


def lazy_group(table: CommandTable) -> type[LazyGroup]:
    """The group class (for `typer.Typer(cls=...)`) whose sub-commands are the table's."""
    return type("LazyGroup", (LazyGroup,), {"table": table})
