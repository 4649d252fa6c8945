"""The ``dotenv`` source: a ``.env`` file next to keyrun.toml."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keyrun.dotenvfile import parse_dotenv, replace_assignment, resolve_values
from keyrun.errors import ConfigError, SourceError
from keyrun.files import private_directory, replace_file
from keyrun.ownership import read_trusted
from keyrun.secret import Secret
from keyrun.sources import Deadline, Health, Item, Meta, Option, Outcome, Problem, Request, Source
from keyrun.sources._values import pick_field
from keyrun.template import Template


class DotenvSource(Source):
    """A ``.env`` file: one file holding every key by name.

    Parsed strictly: every value is the one python-dotenv reads, or the file is refused
    with its line (a line that cannot be parsed, backtick quotes, shell-only ``${…}``
    forms, ``${VAR}`` inside single quotes). The file's
    modification time is reported as each key's last change. ``keyrun set`` rewrites
    the key's line in place and keeps the file's mode (0600 for a new file).

    .. code-block:: toml

        [sources.local]
        type = "dotenv"
        path = ".env.{env}"
    """

    type_name = "dotenv"
    summary = "a .env file (strict parsing; writable)"
    remote = False
    writable = True
    records_age = True
    options = (
        Option("path", "the file, relative to keyrun.toml; may use {project} and {env}",
               default=".env", template=True, example=".env.{env}"),
    )

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        if Template(settings["path"], where=where).has_key:
            raise ConfigError(f"{where}: path cannot contain {{key}}",
                              "a .env file holds every key by name: use a path like .env.{env}")

    @property
    def path(self) -> Path:
        return self.context.root / self.render("path")

    @property
    def display_path(self) -> str:
        return self.render("path")

    def locate(self, request: Request) -> str:
        return f"{self.display_path}#{request.name}"

    def local_files(self) -> tuple[Path, ...]:
        return (self.path,)

    def _read(self) -> tuple[str, os.stat_result] | None:
        try:
            read = read_trusted(self.path, "this .env file")
        except ConfigError as exc:
            raise SourceError(self.name, exc.message, exc.hint) from None
        if read is None:
            return None
        data, info = read
        try:
            return data.decode("utf-8"), info
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ConfigError("is not valid UTF-8 text", "save the file as UTF-8",
                              path=str(self.path), line=line) from None

    def _values(self) -> tuple[dict[str, str | None], datetime] | None:
        read = self._read()
        if read is None:
            return None
        text, info = read
        entries = parse_dotenv(text, str(self.path))
        changed = datetime.fromtimestamp(info.st_mtime, tz=UTC)
        return resolve_values(entries, self.context.environ, str(self.path)), changed

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        loaded = self._values()
        if loaded is None:
            return {r.key: Problem.missing(f"{self.display_path} does not exist") for r in requests}
        values, changed = loaded
        results: dict[str, Outcome] = {}
        for request in requests:
            value = values.get(request.name)
            if value is None:
                detail = "declared without a value" if request.name in values else "not found"
                results[request.key] = Problem.missing(f"{detail} in {self.display_path}")
                continue
            if request.field is not None:
                picked = pick_field(value, request.field, self.locate(request))
                if isinstance(picked, Problem):
                    results[request.key] = picked
                    continue
                value = picked
            results[request.key] = Item(Secret(value), updated=changed)
        return results

    def names(self, deadline: Deadline) -> list[str] | None:
        loaded = self._values()
        return [] if loaded is None else [k for k, v in loaded[0].items() if v is not None]

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        loaded = self._values()
        if loaded is None:
            return {r.key: Meta(exists=False) for r in requests}
        values, changed = loaded
        return {
            r.key: Meta(exists=values.get(r.name) is not None, updated=changed,
                        note="age is the file's modification time")
            for r in requests
        }

    def check(self, deadline: Deadline) -> Health:
        loaded = self._values()
        if loaded is None:
            return Health(f"{self.display_path} does not exist",
                          (f"{self.display_path} does not exist (keyrun set creates it)",))
        return Health(f"{self.display_path}: {len(loaded[0])} keys")

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        if request.field is not None:
            raise SourceError(self.name, f"{request.key} is read from field {request.field!r} "
                              "of a JSON value; keyrun set cannot rewrite one field",
                              f"edit {self.display_path} by hand")
        path = self.path
        if path.is_symlink():  # SPEC §5: what keyrun writes is never reached through a link
            raise SourceError(self.name, f"{path} is a symbolic link; keyrun set writes only "
                              "to a file itself, never through a link",
                              f"write the key where the link points ({path.resolve()}), or "
                              "replace the link with a file")
        read = self._read()
        text, mode = ("", 0o600) if read is None else (read[0], stat.S_IMODE(read[1].st_mode))
        updated = replace_assignment(text, parse_dotenv(text, str(path)), request.name,
                                     value.reveal())
        private_directory(path.parent)
        replace_file(path, updated.encode("utf-8"), mode)
        return self.display_path
