"""The mapping of values handed to Python code (SPEC §6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

_V = TypeVar("_V")


class Values(dict[str, _V]):
    """What Python code is handed (``load``, the ``keyrun_secrets`` fixture, the
    pydantic-settings source): a plain ``dict`` of plain ``str`` values, except that its
    ``repr`` names the keys only, so a failing test's report, a notebook's echo or a logged
    object never shows a value (SPEC §6). ``copy()`` keeps that; ``dict(values)`` is a
    deliberate way out."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<keyrun values: {', '.join(self) or 'none'}>"

    __str__ = __repr__

    def copy(self) -> Values[_V]:
        return Values(self)


# Who is told of the values handed out: the pytest plugin, which replaces them in its
# reports whether a test took them from its fixture or called keyrun.load itself.
_WATCHERS: list[Callable[[Mapping[str, str]], None]] = []


def watch(callback: Callable[[Mapping[str, str]], None]) -> Callable[[], None]:
    """Call ``callback`` with the values of every profile this process resolves from now
    on (``load``, ``inject``, the fixture, the pydantic source); returns what stops it."""
    _WATCHERS.append(callback)
    return lambda: _WATCHERS.remove(callback) if callback in _WATCHERS else None


def handed_out(values: Mapping[str, str]) -> None:
    for callback in list(_WATCHERS):
        callback(values)
