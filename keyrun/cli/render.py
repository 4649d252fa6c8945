"""Output: rich tables on a terminal, plain aligned text otherwise (SPEC §3)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def is_terminal(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None,
          stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if is_terminal(stream):
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(*headers, title=title, title_justify="left", box=None,
                           header_style="bold", pad_edge=False)
        for row in rows:
            rich_table.add_row(*row)
        Console(file=stream, highlight=False).print(rich_table)
        return
    if title:
        print(title, file=stream)
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=stream)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def print_marked(lines: Sequence[tuple[str, str | None, str]], *,
                 stream: TextIO | None = None) -> None:
    """Lines of (marker, style of the marker, text); only the marker is coloured."""
    stream = stream or sys.stdout
    if is_terminal(stream):
        from rich.console import Console
        from rich.text import Text

        console = Console(file=stream, highlight=False)
        for marker, style, text in lines:
            console.print(Text.assemble((marker, style or ""), text))
        return
    for marker, _, text in lines:
        print(f"{marker}{text}", file=stream)
