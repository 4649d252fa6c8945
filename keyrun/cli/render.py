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
          optional: Sequence[str] = ()) -> None:
    """Aligned columns. On a terminal, a table that fits its width: the ``folding``
    columns (paths, ids) break across lines (after a ``/``, ``#`` or ``@`` where they can)
    rather than being cut short, the others keep whole, and the ``optional`` ones are left
    out when no row has anything in them."""
    stream = stream or sys.stdout
    title = None if title is None else printable(title)
    rows = [[printable(cell) for cell in row] for row in rows]
    if is_terminal(stream):
        from rich.console import Console
        from rich.table import Table

        console = Console(file=stream, highlight=False)
        shown = [i for i, header in enumerate(headers)
                 if header not in optional or any(row[i] for row in rows)]
        folds = [i for i in shown if headers[i] in folding]
        whole = sum(_width(headers[i], rows, i) for i in shown if i not in folds)
        room = max((console.width - whole - 2 * (len(shown) - 1)) // max(len(folds), 1), 12)
        rich_table = Table(title=title, title_justify="left", box=None, header_style="bold",
                           pad_edge=False)
        for i in shown:
            rich_table.add_column(headers[i], overflow="fold" if i in folds else "ellipsis",
                                  no_wrap=i not in folds)
        for row in rows:
            rich_table.add_row(*(wrap_path(row[i], room) if i in folds else row[i]
                                 for i in shown))
        console.print(rich_table)
        return
    if title:
        print(title, file=stream)
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=stream)


def _width(header: str, rows: Sequence[Sequence[str]], i: int) -> int:
    return max([len(header), *(len(row[i]) for row in rows)])


def wrap_path(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken after ``/``, ``#`` or ``@``
    where it can be and anywhere where it cannot."""
    import re

    lines: list[str] = []
    line = ""
    for piece in re.findall(r"[^/#@]+[/#@]*|[/#@]+", text):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
        while len(line) > width:
            lines.append(line[:width])
            line = line[width:]
    return "\n".join([*lines, line] if line or not lines else lines)


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

        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=widths[0], no_wrap=True)
        grid.add_column(width=widths[1], no_wrap=True)
        grid.add_column(overflow="fold")
        for marker, style, label, text in lines:
            grid.add_row(Text(marker, style or ""), label, text)
        Console(file=stream, highlight=False).print(grid)
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

        console = Console(file=stream, highlight=False)
        for marker, style, text in lines:
            console.print(Text.assemble((marker, style or ""), text))
        return
    for marker, _, text in lines:
        print(f"{marker}{text}", file=stream)
