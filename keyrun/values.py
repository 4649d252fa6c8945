"""The mapping of values handed to Python code (SPEC §6)."""

from __future__ import annotations

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
