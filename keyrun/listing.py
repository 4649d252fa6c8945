"""``keyrun list``: one row per key — where it comes from, whether it resolved."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from keyrun.background import run_all
from keyrun.preview import preview
from keyrun.profile import undeclared_names
from keyrun.reporter import Reporter
from keyrun.resolve import KeyResult, Resolution, fold_by_cause
from keyrun.session import Selection, open_session
from keyrun.sources import Meta

if TYPE_CHECKING:
    from keyrun.profile import Profile
    from keyrun.progress import Progress


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
    note: str | None = None  # what the backend says besides (custom metadata, …)
    delivery: str = "env"  # the key's ``as``: "file" gives the command a path to the value

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
            "as": self.delivery,
        }


Listed = tuple[str, str, list[Row]]  # project, environment, rows


def list_env(env: str | None, *, config: str | None = None, project: str | None = None,
             environ: Mapping[str, str] | None = None, report: Reporter | None = None,
             details: bool = False, progress: bool | Progress = False) -> Listed:
    """Fetch one environment (under its ``timeout``), log the resolution, and list it;
    ``report`` hears what the profile and the revoking of its leases had to say, and
    ``progress`` shows the fetch (see ``Session``)."""
    # Not strict: a name problem that would stop `run` is a row here (SPEC §3).
    session = open_session(Selection(env, project, config), action="list", environ=environ,
                           strict=False, report=report or Reporter(once=True),
                           warn_unlogged=False, progress=progress)
    resolution = session.fetch()
    try:
        rows = _with_name_problems(list_rows(resolution, details=details), session.profile)
    finally:
        session.release()
    session.log()
    for where, names in undeclared_names(session.profile).items():
        session.report.detail(f"{where} also holds {', '.join(names)}, which no key declares: "
                              "not passed (declare them in keyrun.toml's [keys] or "
                              ".env.example to pass them)")
    return session.profile.project, session.profile.env.name, rows


def list_all_envs(*, config: str | None = None, project: str | None = None,
                  environ: Mapping[str, str] | None = None, report: Reporter | None = None,
                  details: bool = False, progress: bool = False) -> dict[str, Listed]:
    """Every environment, fetched at once: the whole listing takes about the longest
    ``timeout``, not their sum (a dead endpoint shared by every environment); with
    ``progress``, one spinner line names every fetch under way."""
    from keyrun.config import load_config
    from keyrun.progress import Progress

    environ = os.environ if environ is None else environ
    report = report or Reporter(once=True)  # one warning for every environment it concerns
    shared: bool | Progress = Progress() if progress else False
    names = load_config(None, config, environ).env_names()
    running = run_all({name: partial(list_env, name, config=config, project=project,
                                     environ=environ, report=report, details=details,
                                     progress=shared)
                       for name in names})  # each fetch ends by its own deadline
    return {name: call.result() for name, call in running.items()}


def folded_problems(rows: list[Row]) -> list[tuple[str, list[str], str]]:
    """The rows that did not resolve, as (status, keys, error): one line per cause, not
    one per key (a source that is down fails every key it holds alike)."""
    causes = fold_by_cause((row.name, (row.status, row.error)) for row in rows
                           if row.status != "ok" and row.error)
    return [(status, keys, error) for (status, error), keys in causes.items()]


def _with_name_problems(rows: list[Row], profile: Profile) -> list[Row]:
    """Keys `run` would refuse by name (invalid, reserved, colliding) as error rows."""
    from dataclasses import replace

    from keyrun.profile import name_problems

    problems = {p.key: p for p in name_problems(profile) if p.blocking}
    return [replace(row, status="error", error=f"{problems[row.name].message} — "
                    f"{problems[row.name].hint}")
            if row.name in problems else row for row in rows]


def list_rows(resolution: Resolution, *, details: bool = False) -> list[Row]:
    """One row per key; where a fetch did not say when a key changed and its source can
    tell without reading it, the age comes from the source's metadata. ``details`` asks
    the metadata of every key, for its note (Vault's custom metadata, …)."""
    meta = resolution.metadata(missing_age_only=not details)
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
        failed, problem = result.reasons[-1]
        error = f"{failed}: {problem.message}"
    elif result.status in ("missing", "optional"):
        error = "; ".join(f"{name}: {problem.message}" for name, problem in result.reasons) or None
    return Row(
        name=result.key,
        source=source,
        location=location,
        status=result.status,
        preview=_preview(item.value.reveal()) if item else None,
        version=(item.version or (meta.version if meta else None)) if item else None,
        updated=(item.updated or (meta.updated if meta else None)) if item else None,
        error=error,
        description=binding.spec.description,
        note=meta.note if meta else None,
        delivery=binding.spec.delivery,
    )


LIST_PREVIEW_FROM = 12  # SPEC §3: list shows nothing of a shorter value


def _preview(value: str) -> str | None:
    """``sk-…a1b2`` by the one preview policy (``keyrun.preview``), on one line."""
    return one_line(preview(value)) if len(value) >= LIST_PREVIEW_FROM else None


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``), so a
    preview of a multi-line value (a PEM key) keeps the table on one line per key."""
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    code = ord(ch)
    return (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
            else f"\\U{code:08x}")
