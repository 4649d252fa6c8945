"""What sources do with what a backend holds: JSON objects of keys (bundles), a field
picked out of a JSON value, bytes as text, dates.

A Problem's message names neither the source nor the key: the core shows both beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from keyrun.sources import Problem, Request


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None when it holds something else."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def bundle_entry(data: Mapping[str, Any], request: Request, what: str, *,
                 null: str = "holds null for") -> str | Problem:
    """The key ``request`` names in a bundle (``data``, found at ``what``), or its field."""
    if data.get(request.name) is None:
        detail = null if request.name in data else "has no key"
        return Problem.missing(f"{what} {detail} {request.name!r}")
    return entry_value(data[request.name], request.field, f"{what}#{request.name}")


def entry_value(value: object, field: str | None, where: str) -> str | Problem:
    """A bundle's entry as a key's value: all of it, or its ``field``."""
    if field is None:
        return as_text(value)
    if isinstance(value, dict):
        return field_of(value, field, where)
    return pick_field(as_text(value), field, where)


def pick_field(raw: str, field: str, where: str) -> str | Problem:
    """The ``field`` of a JSON object held as a value."""
    try:
        data = json.loads(raw)
    except ValueError:
        return Problem("error", f"the value at {where} is not JSON, so field {field!r} "
                                "cannot be read from it")
    if not isinstance(data, dict):
        return Problem("error", f"the value at {where} is not a JSON object, so field "
                                f"{field!r} cannot be read from it")
    return field_of(data, field, where)


def field_of(data: Mapping[str, Any], field: str, where: str) -> str | Problem:
    if field not in data:
        fields = ", ".join(sorted(data)) or "none"
        return Problem.missing(f"no field {field!r} at {where} (fields: {fields})")
    return as_text(data[field])


def as_text(value: object) -> str:
    """A JSON value as an environment value: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def decode_text(data: bytes, where: str) -> str | Problem:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Problem("error", f"the value at {where} is binary, not UTF-8 text")


def aware(value: object) -> datetime | None:
    """A backend's date as an aware datetime (UTC when it says no zone); None if it is none."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
