"""Where MCP clients keep their server lists (SPEC §3), and the servers one file holds.

User level: Claude Desktop (``$XDG_CONFIG_HOME/Claude/claude_desktop_config.json``, on macOS
``~/Library/Application Support/Claude/…``), Claude Code (``~/.claude.json``: top-level
``mcpServers`` and each ``projects.<dir>.mcpServers``), Cursor (``~/.cursor/mcp.json``), VS Code
(its user profile's ``mcp.json``), Windsurf (``~/.codeium/windsurf/mcp_config.json``). Project
level, in the current directory up to its git work tree's top and in every project Claude Code
knows: ``.mcp.json`` (Claude Code), ``.cursor/mcp.json`` (Cursor), ``.vscode/mcp.json`` (VS
Code, whose servers are under ``servers``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from keyrun.mcp import jsonc

CLAUDE_DESKTOP = "Claude Desktop"
CLAUDE_CODE = "Claude Code"
CURSOR = "Cursor"
VSCODE = "VS Code"
WINDSURF = "Windsurf"
OTHER = "MCP client"
SLUGS = {CLAUDE_DESKTOP: "claude-desktop", CLAUDE_CODE: "claude-code", CURSOR: "cursor",
         VSCODE: "vscode", WINDSURF: "windsurf", OTHER: "mcp"}
_MACOS_SUPPORT = ("Library", "Application Support")


@dataclass(frozen=True)
class ConfigFile:
    """One MCP configuration file: which client reads it, and whether it is the user's own
    (as opposed to a project's, which may be shared through git)."""

    client: str
    path: Path
    user_level: bool = False


@dataclass(frozen=True)
class Server:
    """One server entry. ``project`` is the directory of a Claude Code per-project entry."""

    file: ConfigFile
    name: str
    entry: jsonc.Node
    project: str | None = None

    @property
    def remote(self) -> bool:
        """Reached over the network (``url``; Windsurf's ``serverUrl``), not started here."""
        return self.entry.get("command") is None and (
            self.entry.get("url") is not None or self.entry.get("serverUrl") is not None)

    @property
    def label(self) -> str:
        return self.name if self.project is None else f"{self.name} (project {self.project})"


def user_files(home: Path, environ: Mapping[str, str]) -> list[ConfigFile]:
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    support = home.joinpath(*_MACOS_SUPPORT)
    places = [
        (CLAUDE_DESKTOP, config_home / "Claude" / "claude_desktop_config.json"),
        (CLAUDE_DESKTOP, support / "Claude" / "claude_desktop_config.json"),
        (CLAUDE_CODE, home / ".claude.json"),
        (CURSOR, home / ".cursor" / "mcp.json"),
        (VSCODE, config_home / "Code" / "User" / "mcp.json"),
        (VSCODE, support / "Code" / "User" / "mcp.json"),
        (WINDSURF, home / ".codeium" / "windsurf" / "mcp_config.json"),
    ]
    return [ConfigFile(client, path, user_level=True) for client, path in places]


def project_files(directory: Path) -> list[ConfigFile]:
    return [ConfigFile(CLAUDE_CODE, directory / ".mcp.json"),
            ConfigFile(CURSOR, directory / ".cursor" / "mcp.json"),
            ConfigFile(VSCODE, directory / ".vscode" / "mcp.json")]


def project_directories(cwd: Path) -> list[Path]:
    """The current directory and its parents up to the top of its git work tree (itself
    alone outside one)."""
    for depth, directory in enumerate((cwd, *cwd.parents)):
        if (directory / ".git").exists():
            return [cwd, *cwd.parents][: depth + 1]
    return [cwd]


def guess_client(path: Path) -> str:
    name, parent = path.name, path.parent.name
    if name == "claude_desktop_config.json":
        return CLAUDE_DESKTOP
    if name in (".claude.json", ".mcp.json"):
        return CLAUDE_CODE
    if parent == ".cursor":
        return CURSOR
    if parent == ".vscode" or (parent == "User" and path.parent.parent.name == "Code"):
        return VSCODE
    if name == "mcp_config.json":
        return WINDSURF
    return OTHER


def unique(files: Iterable[ConfigFile]) -> list[ConfigFile]:
    """One entry per real file (a project directory may be the home directory, a file may
    be reached through a link), the first one found kept."""
    seen: set[str] = set()
    kept = []
    for found in files:
        real = os.path.realpath(found.path)
        if real not in seen:
            seen.add(real)
            kept.append(found)
    return kept


SERVER_LISTS = ("mcpServers", "servers")


def wanted(path: jsonc.Path) -> bool:
    """Which parts of a configuration file hold servers (the rest is only measured)."""
    if not path or path[0] in SERVER_LISTS:
        return True
    if path[0] == "mcp":
        return len(path) == 1 or path[1] == "servers"
    if path[0] == "projects":
        return len(path) <= 2 or path[2] == "mcpServers"
    return False


def servers(document: jsonc.Document, file: ConfigFile) -> list[Server]:
    """Every server entry of a parsed file: ``mcpServers`` (every client), ``servers`` (VS
    Code), ``mcp.servers`` (VS Code's settings.json) and Claude Code's per-project lists."""
    root = document.root
    if root.kind != "object":
        return []
    found = [*_entries(root.get("mcpServers"), file, None),
             *_entries(root.get("servers"), file, None)]
    mcp = root.get("mcp")
    if mcp is not None and mcp.kind == "object":
        found += _entries(mcp.get("servers"), file, None)
    projects = root.get("projects")
    if projects is not None and projects.kind == "object":
        for member in projects.members:
            if member.value.kind == "object":
                found += _entries(member.value.get("mcpServers"), file, member.key)
    return found


def _entries(container: jsonc.Node | None, file: ConfigFile, project: str | None
             ) -> Iterator[Server]:
    if container is None or container.kind != "object":
        return
    for member in container.members:
        if member.value.kind == "object":
            yield Server(file, member.key, member.value, project)


def claude_code_projects(document: jsonc.Document) -> list[Path]:
    """The project directories Claude Code knows (``~/.claude.json``'s ``projects``)."""
    projects = document.root.get("projects") if document.root.kind == "object" else None
    if projects is None or projects.kind != "object":
        return []
    return [Path(member.key) for member in projects.members if os.path.isabs(member.key)]


def discover(home: Path, cwd: Path, environ: Mapping[str, str], named: Sequence[Path],
             projects: Sequence[Path] = ()) -> list[ConfigFile]:
    """The files to read: user-level, project-level (here and ``projects``), then the named
    ones; those that do not exist are left out unless named."""
    found = [f for f in user_files(home, environ) if f.path.is_file()]
    for directory in [*project_directories(cwd), *projects]:
        found += [f for f in project_files(directory) if f.path.is_file()]
    for path in named:
        found += [f for f in project_files(path) if f.path.is_file()] if path.is_dir() else [
            ConfigFile(guess_client(path), path)]
    return unique(found)
