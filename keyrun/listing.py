"""``keyrun list``: one row per key — where it comes from, whether it resolved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keyrun.resolve import KeyResult, Resolution
from keyrun.secret import preview
from keyrun.sources import Meta


@dataclass(frozen=True)
class Row:
    name: str
    source: str | None
    location: str | None
    status: str
    preview: str | None
    version: str | None
    updated: datetime | None
    error: str | None
    description: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "location": self.location,
            "status": self.status,
            "preview": self.preview,
            "version": self.version,
            "updated": self.updated.isoformat() if self.updated else None,
            "error": self.error,
        }


def list_rows(resolution: Resolution) -> list[Row]:
    """One row per key; where a fetch did not say when a key changed and its source can
    tell without reading it, the age comes from the source's metadata."""
    meta = resolution.metadata(missing_age_only=True)
    return [_row(resolution, r, meta.get(r.key)) for r in resolution.results.values()]


def _row(resolution: Resolution, result: KeyResult, meta: Meta | None) -> Row:
    profile = resolution.profile
    binding = result.binding
    source = result.source or (binding.candidates[0] if binding.candidates else None)
    location = None
    if source is not None:
        location = profile.sources[source].locate(profile.request(binding, source))
    item = result.item
    error = None
    if result.status == "error" and result.reasons:
        error = result.reasons[-1][1].message
    elif result.status in ("missing", "optional"):
        error = "; ".join(f"{name}: {problem.message}" for name, problem in result.reasons) or None
    return Row(
        name=result.key,
        source=source,
        location=location,
        status=result.status,
        preview=(preview(item.value.reveal()) or None) if item else None,
        version=(item.version or (meta.version if meta else None)) if item else None,
        updated=(item.updated or (meta.updated if meta else None)) if item else None,
        error=error,
        description=binding.spec.description,
    )
