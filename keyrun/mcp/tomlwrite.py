"""Writing the TOML of a keyrun profile (the standard library only reads TOML).

Tables become ``[a.b]`` sections; a table inside ``keys`` (a key's options) is written inline,
as people write them (``OPENAI_API_KEY = {}``). Strings, booleans, numbers and lists of them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    lines = [header.rstrip("\n")] if header else []
    _table(lines, (), data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], path: tuple[str, ...], data: Mapping[str, Any]) -> None:
    inline = path[-1:] == ("keys",)
    plain = [(k, v) for k, v in data.items() if not isinstance(v, Mapping) or inline]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping) and not inline]
    if path and (plain or not tables):
        lines += ["", f"[{'.'.join(map(key, path))}]"]
    lines += [f"{key(k)} = {value(v)}" for k, v in plain]
    for name, table in tables:
        _table(lines, (*path, name), table)


def key(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name, ensure_ascii=False)


def value(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if not math.isfinite(item):
            return "nan" if math.isnan(item) else ("inf" if item > 0 else "-inf")
        return repr(item)
    if isinstance(item, str):
        # A TOML basic string is a JSON string, except that TOML wants DEL escaped too.
        return json.dumps(item, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(item, Mapping):
        return "{" + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + "}" \
            if item else "{}"
    if isinstance(item, Sequence):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"cannot write a {type(item).__name__} as TOML")
