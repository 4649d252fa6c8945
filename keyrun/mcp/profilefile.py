"""The keyrun profile ``keyrun mcp protect`` writes for one MCP configuration file.

One file per MCP configuration, in ``$XDG_CONFIG_HOME/keyrun/mcp/`` (``claude-desktop.toml``,
``cursor.toml``…; a project's file gets its directory's name and a hash of its path), and one
environment per server, named after it. It names where each key is kept and holds no value.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyrun.errors import ConfigError
from keyrun.mcp import clients, tomlwrite
from keyrun.mcp.clients import ConfigFile, Server

MARKER = "# Written by `keyrun mcp protect`"
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def directory(environ: Mapping[str, str], home: Path) -> Path:
    return Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "keyrun" / "mcp"


def profile_path(file: ConfigFile, environ: Mapping[str, str], home: Path) -> Path:
    """Where the profile of ``file``'s servers lives."""
    slug = clients.SLUGS[file.client]
    if file.user_level:
        return directory(environ, home) / f"{slug}.toml"
    real = os.path.realpath(file.path)
    project = Path(real).parent
    if project.name in (".cursor", ".vscode"):
        project = project.parent
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return directory(environ, home) / f"{slug}-{slug_of(project.name) or 'root'}-{digest}.toml"


def slug_of(name: str) -> str:
    """A name safe as an environment's name and a keychain service part."""
    return _SLUG.sub("-", name).strip("-.")


@dataclass
class ProfileFile:
    """The profile as data: read from its file when there is one, written whole."""

    path: Path
    config: ConfigFile
    data: dict[str, Any] = field(default_factory=dict)
    exists: bool = False

    @classmethod
    def load(cls, path: Path, config: ConfigFile, project: str) -> ProfileFile:
        from keyrun.ownership import read_trusted

        read = read_trusted(path, "keyrun profile")
        if read is None:
            return cls(path, config, {"project": project, "sources": {}, "env": {}})
        text = read[0].decode("utf-8", "replace")
        if MARKER not in text:
            raise ConfigError(f"{path} exists and was not written by keyrun mcp protect",
                              "move it away, then run keyrun mcp protect again")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})",
                              "fix it, or move it away and protect the servers again") from None
        data.setdefault("sources", {})
        data.setdefault("env", {})
        return cls(path, config, data, exists=True)

    @property
    def project(self) -> str:
        return str(self.data["project"])

    def header(self) -> str:
        return (f"{MARKER} for the MCP servers of {self.config.path} ({self.config.client}).\n"
                "# One environment per server; each key names the source it is read from, and\n"
                "# no value is written here. keyrun rewrites this file when it protects more\n"
                "# servers of that file: tables are kept, comments are not.\n")

    def text(self) -> str:
        return tomlwrite.dumps(self.data, self.header())

    def use_source(self, name: str, table: Mapping[str, Any]) -> str:
        """The name under which ``table`` is a source here: ``name``, or ``name-2``… when a
        different source already has that name."""
        sources: dict[str, Any] = self.data["sources"]
        candidate, number = name, 1
        while candidate in sources and sources[candidate] != dict(table):
            number += 1
            candidate = f"{name}-{number}"
        sources[candidate] = dict(table)
        return candidate

    def env_for(self, server: Server) -> str:
        """The environment of ``server``: the one already made for it, else a new name."""
        envs: dict[str, Any] = self.data["env"]
        description = describe(server)
        for name, table in envs.items():
            if isinstance(table, dict) and table.get("description") == description:
                return name
        base = slug_of(server.name) or "server"
        if server.project is not None:
            base = f"{base}@{slug_of(Path(server.project).name) or 'root'}"
        name, number = base, 1
        while name in envs:
            number += 1
            name = f"{base}-{number}"
        envs[name] = {"description": description, "sources": [], "keys": {}}
        return name

    def ensure_env(self, name: str, server: Server) -> str:
        """Environment ``name`` (a wrapped entry's), made for ``server`` if missing."""
        self.data["env"].setdefault(name, {"description": describe(server), "sources": [],
                                           "keys": {}})
        return name

    def add_key(self, env: str, key: str, source: str, backend: str) -> None:
        """``key`` of environment ``env``, read from ``source`` under ``backend``."""
        table: dict[str, Any] = self.data["env"][env]
        sources: list[str] = table.setdefault("sources", [])
        keys: dict[str, dict[str, Any]] = table.setdefault("keys", {})
        if source not in sources:
            for older in keys.values():  # with two sources, each key names its own
                if sources:
                    older.setdefault("source", sources[0])
            sources.insert(0, source)
        options: dict[str, Any] = {} if backend == key else {"name": backend}
        if len(sources) > 1:
            options["source"] = source
        keys[key] = options


def describe(server: Server) -> str:
    where = f" of project {server.project}" if server.project is not None else ""
    return f"{server.file.client} server {server.name!r}{where}"
