"""Helpers shared by sources: picking a field out of a JSON value, decoding bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from keyrun.sources import Problem


def pick_field(key: str, raw: str, field: str, where: str) -> str | Problem:
    """The ``field`` of a JSON object held as a value."""
    try:
        data = json.loads(raw)
    except ValueError:
        return Problem("error", f"{key}: the value at {where} is not JSON, so field "
                                f"{field!r} cannot be read from it")
    if not isinstance(data, dict):
        return Problem("error", f"{key}: the value at {where} is not a JSON object, so field "
                                f"{field!r} cannot be read from it")
    return field_of(key, data, field, where)


def field_of(key: str, data: Mapping[str, Any], field: str, where: str) -> str | Problem:
    if field not in data:
        fields = ", ".join(sorted(data)) or "none"
        return Problem("missing", f"{key}: no field {field!r} at {where} (fields: {fields})")
    return as_text(data[field])


def as_text(value: object) -> str:
    """A JSON value as an environment value: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def decode_text(key: str, data: bytes, where: str) -> str | Problem:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Problem("error", f"{key}: the value at {where} is binary, not UTF-8 text")
