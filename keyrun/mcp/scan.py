"""``keyrun mcp scan``: the literal credentials in MCP client configurations (SPEC §3)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyrun.errors import ConfigError
from keyrun.mcp import clients, jsonc
from keyrun.mcp.clients import ConfigFile, Server
from keyrun.mcp.judge import Verdict, arguments, judge
from keyrun.secret import Secret

MAX_CONFIG_BYTES = 64 << 20  # ~/.claude.json keeps project history: larger than a keyrun.toml


@dataclass(frozen=True)
class Config:
    """A configuration file read and parsed: its text, the parse, its stat."""

    file: ConfigFile
    text: str
    document: jsonc.Document
    info: os.stat_result

    def line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1


@dataclass(frozen=True)
class Unreadable:
    """A file that could not be read or parsed, and why."""

    file: ConfigFile
    reason: str


@dataclass(frozen=True)
class Finding:
    """A literal credential in one server entry. ``variable`` is the env or header name,
    the flag an argument follows, or ``args[N]``; ``secret`` is what would be stored (for
    ``--flag=VALUE``, the VALUE); ``node`` the JSON string holding it."""

    server: Server
    field: str  # env, args or headers
    variable: str
    verdict: Verdict
    node: jsonc.Node
    secret: Secret
    index: int | None = None  # args only: the argument's position
    prefix: str = ""  # args only: what stays before the value (``--api-key=``)

    def as_json(self) -> dict[str, Any]:
        return {"client": self.server.file.client, "path": str(self.server.file.path),
                "server": self.server.name, "field": self.field, "variable": self.variable,
                "preview": self.verdict.preview, "project": self.server.project}


@dataclass
class ScanResult:
    configs: list[Config] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def servers_of(self, config: Config) -> list[Server]:
        return clients.servers(config.document, config.file)


def read_config(file: ConfigFile) -> Config | Unreadable:
    from keyrun.ownership import read_trusted

    try:
        read = read_trusted(file.path, "MCP configuration", limit=MAX_CONFIG_BYTES)
    except ConfigError as exc:
        return Unreadable(file, exc.message.removeprefix(f"{file.path}: "))
    if read is None:
        return Unreadable(file, "no such file")
    data, info = read
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Unreadable(file, f"not UTF-8 text (byte {exc.start})")
    try:
        return Config(file, text, jsonc.parse(text, clients.wanted), info)
    except jsonc.JsonError as exc:
        return Unreadable(file, f"not valid JSON: {exc}")


def findings_in(server: Server) -> list[Finding]:
    found: list[Finding] = []
    for field_name in ("env", "headers"):
        table = server.entry.get(field_name)
        if table is not None and table.kind == "object":
            for name, node in table.strings():
                verdict = judge(name, node.value)
                if verdict is not None:
                    found.append(Finding(server, field_name, name, verdict, node,
                                         Secret(node.value)))
    found += _in_args(server)
    return found


def _in_args(server: Server) -> Iterator[Finding]:
    args = server.entry.get("args")
    if args is None or args.kind != "array":
        return
    strings = [item.value if item.kind == "string" else "" for item in args.items]
    for argument in arguments(strings):
        verdict = judge(argument.flag, argument.value)
        if verdict is not None:
            yield Finding(server, "args", argument.flag or f"args[{argument.index}]", verdict,
                          args.items[argument.index], Secret(argument.value), argument.index,
                          argument.prefix)


def scan_configs(named: Sequence[Path] = (), *, home: Path | None = None,
                 cwd: Path | None = None, environ: Mapping[str, str] | None = None
                 ) -> ScanResult:
    """Read every configuration SPEC §3 lists (and ``named``), and judge every server."""
    environ = os.environ if environ is None else environ
    home = home or Path(environ.get("HOME") or Path.home())
    cwd = cwd or Path.cwd()
    result = ScanResult()
    reads: dict[Path, Config | Unreadable] = {}

    def read(file: ConfigFile) -> Config | Unreadable:
        if file.path not in reads:
            reads[file.path] = read_config(file)
        return reads[file.path]

    projects: list[Path] = []
    for file in clients.user_files(home, environ):
        if file.client == clients.CLAUDE_CODE and file.path.is_file():
            config = read(file)
            if isinstance(config, Config):
                projects += clients.claude_code_projects(config.document)
    for file in clients.discover(home, cwd, environ, named, projects):
        got = read(file)
        if isinstance(got, Config):
            result.configs.append(got)
        else:
            result.unreadable.append(got)
    for config in result.configs:
        for server in result.servers_of(config):
            result.findings += findings_in(server)
    return result

