"""Durations written in keyrun.toml: ``"30s"``, ``"15m"``, ``"12h"``, ``"90d"``, ``"2w"``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float | None:
    """Seconds, or None when the text is not a duration."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_age(seconds: float) -> str:
    """``"45s"``, ``"3h"``, ``"12d"``: the largest unit that fits at least twice, so that
    47 hours read as 47h rather than 1d (a whole day less than they are)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"
