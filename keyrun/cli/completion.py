"""What the shell completes, and how the help names arguments, where Typer's defaults get
keyrun wrong.

After ``--`` (``keyrun -e dev -- <TAB>``, ``keyrun run <TAB>``) the word is a program to run,
then its own arguments: the programs on ``PATH`` are offered, then nothing, so that the
shell completes file names, instead of keyrun's own command names.
"""

from __future__ import annotations

import os
from typing import Any

from typer.core import TyperCommand, TyperGroup

_AFTER_DASHES = "keyrun.after_dashes"  # ctx.meta: the words after `--`, when it was given


class KeyrunGroup(TyperGroup):
    """The app: ``keyrun [options] -- <TAB>`` completes a program, not a command name."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            ctx.meta[_AFTER_DASHES] = args[args.index("--") + 1 :]
        result: list[str] = super().parse_args(ctx, args)
        return result

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        after = ctx.meta.get(_AFTER_DASHES)
        if after is None:
            found: list[Any] = super().shell_complete(ctx, incomplete)
            return found
        return [] if after else programs(incomplete)


class RunCommand(TyperCommand):
    """``keyrun run [options] [--] <TAB>``: a program, then the shell's file names."""

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        if ctx.args:  # the program is given: its arguments are the shell's to complete
            return []
        if incomplete.startswith("-") and _AFTER_DASHES not in ctx.meta:
            found: list[Any] = super().shell_complete(ctx, incomplete)
            return found
        return programs(incomplete)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            ctx.meta[_AFTER_DASHES] = args[args.index("--") + 1 :]
        result: list[str] = super().parse_args(ctx, args)
        return result


def programs(incomplete: str) -> list[Any]:
    """The executables on ``PATH`` whose names start with ``incomplete``, as a shell's
    command completion offers them; none for a path, which the shell completes itself."""
    if "/" in incomplete:
        return []
    item = _completion_item()
    found: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        try:
            entries = list(os.scandir(folder or "."))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(incomplete) and _executable(entry):
                found.add(entry.name)
    return [item(name) for name in sorted(found)]


def _executable(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file() and os.access(entry.path, os.X_OK)
    except OSError:
        return False


def _completion_item() -> Any:
    """click's CompletionItem: Typer's vendored click where it has one, else click's."""
    import importlib

    vendored = getattr(importlib.import_module("typer.core"), "CompletionItem", None)
    return vendored or importlib.import_module("click.shell_completion").CompletionItem


def plain_arguments(command: Any) -> None:
    """Show every argument of ``command`` and its subcommands by its metavar alone, as
    click does: Typer ≥ 0.16 writes a required one as ``{KEY}`` in the usage line and adds
    its Python type (``<list[str]>``) in the help."""
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", "") == "argument" and param.metavar:
            _show_as(param, param.metavar)
    for sub in getattr(command, "commands", {}).values():
        plain_arguments(sub)


def _show_as(param: Any, metavar: str) -> None:
    record = param.get_help_record

    def help_record(ctx: Any) -> tuple[str, str] | None:
        found = record(ctx)
        return None if found is None else (metavar, found[1])

    param.get_usage_pieces = lambda ctx: [metavar]
    param.get_help_record = help_record
