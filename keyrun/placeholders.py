"""Placeholders judged by their shape: what ``.env.example`` holds (``doctor``'s
``example-placeholders``), with the judgement ``keyrun scan`` makes of a secret it found.

A value is a placeholder when it is a documented example or a stand-in word (scan's
``is_placeholder``: ``changeme``, ``xxxxx``, ``your-key-here``, AWS's ``…EXAMPLE`` keys), a
``<…>`` or ``${…}`` slot, or a URL whose password is a stand-in (scan's own test for
connection URLs: ``postgresql://user:password@localhost/mydb``) or that has none.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from keyrun.scan.checks import stand_in_password
from keyrun.scan.rules import entropy, is_placeholder

_SLOT = re.compile(r"\A(?:<[^<>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\[[^\[\]]*\])\Z")
MIN_RANDOM = 20  # characters: shorter values without a known format are not judged random


def is_placeholder_value(value: str) -> bool:
    """Whether ``value`` is a placeholder by its shape (see the module's docstring)."""
    text = value.strip()
    if not text or _SLOT.match(text) or is_placeholder(text.encode(), loose=True):
        return True
    url = _url(text)
    if url is None:
        return False
    try:
        password = url.password
    except ValueError:
        return False
    return password is None or stand_in_password(password.encode())


def looks_real(value: str) -> bool:
    """A value no placeholder, long and random enough to be a key of a format no scan rule
    knows (the known formats are scan's to find)."""
    if len(value) < MIN_RANDOM or value.isalpha() or is_placeholder_value(value):
        return False
    return entropy(value.encode()) > 3.5


def _url(text: str) -> SplitResult | None:
    """``text`` split as a URL with a host (``scheme://…``), or None."""
    if "://" not in text:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return parts if parts.scheme and parts.netloc else None


__all__ = ["is_placeholder_value", "looks_real"]
