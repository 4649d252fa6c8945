"""Output: rich tables on a terminal, plain aligned text otherwise (SPEC §3)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from keyrun.printable import printable


def is_terminal(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None,
          stream: TextIO | None = None, folding: Sequence[str] = (),
          optional: Sequence[str] = (), breakable: Sequence[str] = ()) -> None:
    """Aligned columns. On a terminal, a table that fits its width: the ``folding``
    columns (paths, ids, notes) break across lines (after a ``/``, ``#``, ``@`` or space,
    else after a ``-``, ``_`` or ``.``, where they can) rather than being cut short; a
    ``breakable`` column (names) breaks after its ``_`` only when the folding ones would
    otherwise get less than ``ROOMY`` characters; the others keep whole. The ``optional``
    ones are left out when no row has anything in them, and from the right while the table
    is too wide or a folding column would get less than ``ROOMY``. Text is never markup."""
    stream = stream or sys.stdout
    title = None if title is None else printable(title)
    rows = [[printable(cell) for cell in row] for row in rows]
    if is_terminal(stream):
        from rich.console import Console
        from rich.text import Text

        console = Console(file=stream, highlight=False, markup=False)
        shown = [i for i, header in enumerate(headers)
                 if header not in optional or any(row[i] for row in rows)]
        while True:
            kinds = ["fold" if headers[i] in folding else
                     "break" if headers[i] in breakable else "whole" for i in shown]
            natural = [_width(headers[i], rows, i) for i in shown]
            least = [len(headers[i]) for i in shown]
            widths = fit(natural, least, kinds, console.width)
            for k, i in enumerate(shown):  # a name broken after its `_` may be narrower still
                if kinds[k] == "break" and widths[k] < natural[k]:
                    natural[k] = max(len(line) for row in rows
                                     for line in wrap_path(row[i], widths[k], "_").split("\n"))
            widths = fit(natural, least, ["whole" if kind == "break" else kind
                                          for kind in kinds], console.width)
            cramped = sum(widths) + 2 * (len(widths) - 1) > console.width or any(
                width < min(need, ROOMY)
                for width, need, kind in zip(widths, natural, kinds, strict=True)
                if kind == "fold")
            spare = [i for i in shown if headers[i] in optional]
            if not cramped or not spare:
                break
            shown.remove(spare[-1])  # too narrow for them all: the rightmost optional goes
        if title:
            console.print(Text(title, style="italic"))  # wrapped at the terminal's width
        # laid out here, not by rich.Table: how it spends a column's padding changed between
        # rich releases, and a column one character off cut the last one short
        console.print(Text(_aligned([headers[i] for i in shown], widths), style="bold"),
                      soft_wrap=True)
        for row in rows:
            stacked = [_cell_lines(row[i], width, kind)
                       for i, width, kind in zip(shown, widths, kinds, strict=True)]
            for depth in range(max(map(len, stacked))):
                layer = [cell[depth] if depth < len(cell) else "" for cell in stacked]
                console.print(Text(_aligned(layer, widths)), soft_wrap=True)
        return
    if title:
        print(title, file=stream)
    widths = [_width(header, rows, i) for i, header in enumerate(headers)]
    for line in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=stream)


ROOMY = 16  # characters a folding column gets before a breakable one gives up its own


def fit(natural: Sequence[int], least: Sequence[int], kinds: Sequence[str],
        width: int) -> list[int]:
    """Column widths for a terminal ``width`` wide (two spaces between columns): each
    column its ``natural`` width where that fits; else the ``fold`` columns share what the
    others leave, the narrowest need served first, none below ``least`` (its header); a
    ``break`` column gives up characters, down to ``ROOMY // 2``, while the folding ones
    would get less than ``ROOMY``."""
    widths = list(natural)
    folds = sorted((i for i, kind in enumerate(kinds) if kind == "fold"),
                   key=lambda i: natural[i])
    room = width - 2 * (len(natural) - 1) - sum(
        natural[i] for i, kind in enumerate(kinds) if kind != "fold")
    short = sum(min(natural[i], ROOMY) for i in folds) - room
    for i, kind in enumerate(kinds):
        given = min(short, natural[i] - max(ROOMY // 2, least[i]))
        if kind == "break" and given > 0:
            widths[i] -= given
            room += given
            short -= given
    for done, i in enumerate(folds):
        widths[i] = max(min(natural[i], room // (len(folds) - done)), least[i])
        room -= widths[i]
    return widths


def _cell_lines(text: str, width: int, kind: str) -> list[str]:
    """A cell's lines at most ``width`` wide: a ``whole`` one cut short with an ellipsis."""
    if kind != "whole":
        return wrap_path(text, width, "_" if kind == "break" else "/#@ ").split("\n")
    from rich.text import Text

    cut = Text(text)
    cut.truncate(width, overflow="ellipsis")
    return [cut.plain]


def _aligned(cells: Sequence[str], widths: Sequence[int]) -> str:
    from rich.cells import cell_len

    return "  ".join(cell + " " * (width - cell_len(cell))
                     for cell, width in zip(cells, widths, strict=True)).rstrip()


def _width(header: str, rows: Sequence[Sequence[str]], i: int) -> int:
    return max([len(header), *(len(row[i]) for row in rows)])


def wrap_path(text: str, width: int, breaks: str = "/#@ ") -> str:
    """``text`` in lines of at most ``width`` characters, broken after one of ``breaks``
    where it can be, else after a ``-``, ``_`` or ``.``, and anywhere where it cannot; a
    line keeps no space at its end."""
    lines: list[str] = []
    line = ""
    for piece in _pieces(text, breaks):
        for part in _pieces(piece, "-_.") if len(piece) > width else [piece]:
            if line and len(line.rstrip(" ")) + len(part.rstrip(" ")) > width:
                lines.append(line.rstrip(" "))
                line = ""
            line += part
            while len(line) > width:
                lines.append(line[:width])
                line = line[width:]
    return "\n".join([*lines, line] if line or not lines else lines)


def _pieces(text: str, breaks: str) -> list[str]:
    """``text`` cut after each run of ``breaks`` characters."""
    import re

    marks = re.escape(breaks)
    return re.findall(f"[^{marks}]+[{marks}]*|[{marks}]+", text)


def print_json(data: Any) -> None:
    print(printable(json.dumps(data, indent=2, ensure_ascii=False), json=True))


def print_hanging(lines: Sequence[tuple[str, str | None, str, str]], *, widths: tuple[int, int],
                  stream: TextIO | None = None) -> None:
    """Lines of (marker, its style, label, text) in three columns of ``widths`` (marker,
    label); on a terminal a long text wraps under itself, never back to column 0."""
    stream = stream or sys.stdout
    lines = [(printable(marker), style, printable(label), printable(text))
             for marker, style, label, text in lines]
    if is_terminal(stream):
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1, 0, 0))  # right only: rich 13.8 pads a column left too
        grid.add_column(width=widths[0], no_wrap=True)
        grid.add_column(width=widths[1], no_wrap=True)
        grid.add_column(overflow="fold")
        for marker, style, label, text in lines:
            grid.add_row(Text(marker, style or ""), label, text)
        Console(file=stream, highlight=False, markup=False).print(grid)
        return
    for marker, _, label, text in lines:
        print(f"{marker:<{widths[0]}} {label:<{widths[1]}} {text}".rstrip(), file=stream)


def print_marked(lines: Sequence[tuple[str, str | None, str]], *,
                 stream: TextIO | None = None) -> None:
    """Lines of (marker, style of the marker, text); only the marker is coloured."""
    stream = stream or sys.stdout
    lines = [(printable(marker), style, printable(text)) for marker, style, text in lines]
    if is_terminal(stream):
        from rich.console import Console
        from rich.text import Text

        console = Console(file=stream, highlight=False, markup=False)
        for marker, style, text in lines:
            console.print(Text.assemble((marker, style or ""), text))
        return
    for marker, _, text in lines:
        print(f"{marker}{text}", file=stream)
