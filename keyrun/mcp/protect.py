"""``keyrun mcp protect``: each literal credential of a stdio server moves to a store, the
server gets an environment in a keyrun profile, and its entry starts through keyrun.

For each configuration file, in this order, so that a failure leaves it as it was: the
values are stored, the profile is written and read back through keyrun itself (every value
must come back), then the file is replaced whole (a temporary file beside it, renamed over
it, with its mode) unless it changed meanwhile. Nothing else is written: no backup, which
would hold the values. Remote servers cannot be started through keyrun: their findings are
left, with the client's own way to keep a header out of the file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keyrun.environ import NAME, is_reserved
from keyrun.errors import ConfigError, KeyrunError
from keyrun.files import private_directory, replace_file
from keyrun.mcp import clients, jsonc, rewrite
from keyrun.mcp.clients import Server
from keyrun.mcp.judge import normal_name
from keyrun.mcp.profilefile import ProfileFile, profile_path
from keyrun.mcp.scan import Config, Finding, ScanResult, findings_in, read_config
from keyrun.mcp.store import Store, git_work_tree, put, source
from keyrun.sources import Deadline, Request


@dataclass(frozen=True)
class Move:
    """A value leaving the file: the variable the server gets it in."""

    finding: Finding
    key: str


@dataclass(frozen=True)
class Left:
    """A finding that stays where it is, why, and what to do instead."""

    finding: Finding
    reason: str
    advice: str


@dataclass
class ServerPlan:
    server: Server
    env: str
    moves: list[Move] = field(default_factory=list)


@dataclass
class FilePlan:
    """One file's change: its servers' moves, the profile, the new text."""

    config: Config
    profile: ProfileFile
    source: str  # the store's name in the profile
    servers: list[ServerPlan]
    new_text: str

    @property
    def moves(self) -> list[Move]:
        return [move for plan in self.servers for move in plan.moves]


@dataclass(frozen=True)
class Stored:
    move: Move
    env: str
    name: str  # the name it is stored under
    where: str  # the item, as the source names it
    written: bool  # False: the same value was there already


@dataclass
class Protection:
    plans: list[FilePlan] = field(default_factory=list)
    left: list[Left] = field(default_factory=list)
    stored: list[Stored] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan(scanned: ScanResult, store: Store, *, launcher: Sequence[str],
         environ: Mapping[str, str], home: Path) -> Protection:
    """What protect would do, changing nothing."""
    protection = Protection()
    for config in scanned.configs:
        found = [f for f in scanned.findings if f.server.file == config.file]
        if found:
            file_plan = _plan_file(config, found, store, launcher, environ, home, protection)
            if file_plan is not None:
                protection.plans.append(file_plan)
    return protection


def _plan_file(config: Config, found: list[Finding], store: Store, launcher: Sequence[str],
               environ: Mapping[str, str], home: Path, protection: Protection
               ) -> FilePlan | None:
    path = profile_path(config.file, environ, home)
    profile = ProfileFile.load(path, config.file, store.project)
    source_name = profile.use_source(store.name, store.table)
    plans: list[ServerPlan] = []
    everyone = clients.servers(config.document, config.file)
    for server in _servers(found):
        mine = [f for f in found if f.server == server]
        twice = _named_twice(server, everyone)
        if twice is not None:
            protection.left += [Left(f, twice, "delete the one the client does not use (it "
                                     "reads the last), then run keyrun mcp protect again")
                                for f in mine]
            continue
        movable, left = _movable(server, mine, path)
        protection.left += left
        if movable:
            existing = rewrite.wrapped(server.entry)
            env = (profile.ensure_env(existing.env, server) if existing is not None
                   else profile.env_for(server))
            plans.append(ServerPlan(server, env, _moves(server, movable)))
    if not plans:
        return None
    edits = [edit for p in plans for edit in rewrite.entry_edits(
        config.text, p.server, launcher=launcher, profile=path, env=p.env,
        removed_env=[m.key for m in p.moves if m.finding.field == "env"],
        arg_variables={m.finding.index: m.key for m in p.moves
                       if m.finding.field == "args" and m.finding.index is not None})]
    new_text = jsonc.apply(config.text, edits)
    file_plan = FilePlan(config, profile, source_name, plans, new_text)
    _check_new_text(file_plan, [left.finding for left in protection.left])
    return file_plan


def _servers(found: list[Finding]) -> list[Server]:
    return list(dict.fromkeys(f.server for f in found))


def _named_twice(server: Server, everyone: Sequence[Server]) -> str | None:
    """A server, or a variable of one, that the file names twice: which value the client
    uses is the last one's, so neither can move without a guess."""
    if sum((s.project, s.name) == (server.project, server.name) for s in everyone) > 1:
        return f"the file names the server {server.name} twice"
    for field_name in ("env", "headers"):
        table = server.entry.get(field_name)
        names = [m.key for m in table.members] if table is not None else []
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            return f"its {field_name} names {', '.join(twice)} twice"
    return None


def _movable(server: Server, found: list[Finding], profile: Path
             ) -> tuple[list[Finding], list[Left]]:
    if server.remote:
        return [], [Left(f, "a remote server: the client connects to it itself, so keyrun "
                         "cannot start it", remote_advice(f)) for f in found]
    command = server.entry.get("command")
    if command is None or command.kind != "string":
        return [], [Left(f, "the entry has no command to start", "edit the file by hand")
                    for f in found]
    existing = rewrite.wrapped(server.entry)
    movable, left = [], []
    for finding in found:
        reason = _unmovable(finding, existing, profile)
        if reason is None:
            movable.append(finding)
        else:
            left.append(Left(finding, *reason))
    return movable, left


def _unmovable(finding: Finding, existing: rewrite.Wrapped | None, profile: Path
               ) -> tuple[str, str] | None:
    if finding.field == "headers":
        return "a header of a server started here", "edit the file by hand"
    if finding.field == "env" and (not NAME.match(finding.variable)
                                   or is_reserved(finding.variable)):
        return (f"{finding.variable} is not a name keyrun sets (reserved, or not a variable "
                "name)", "edit the file by hand")
    if existing is None:
        return None
    if Path(existing.profile) != profile:
        return (f"the server starts through keyrun with {existing.profile}",
                f"move it there: keyrun set {finding.variable} -c {existing.profile} -e "
                f"{existing.env}, then delete it from the file")
    if finding.field == "args":
        return "an argument of a server that already starts through keyrun", (
            "edit the file by hand")
    return None


def _moves(server: Server, found: list[Finding]) -> list[Move]:
    """Each finding and its variable: an env entry keeps its name; an argument gets one
    from its flag (``--api-key`` → API_KEY) or its format (``GITHUB_TOKEN``)."""
    env = server.entry.get("env")
    taken = {m.key for m in env.members} if env is not None and env.kind == "object" else set()
    moves = [Move(f, f.variable) for f in found if f.field == "env"]
    for finding in (f for f in found if f.field == "args"):
        key = unique_name(_argument_name(finding), taken)
        taken.add(key)
        moves.append(Move(finding, key))
    return moves


def _argument_name(finding: Finding) -> str:
    flag = finding.variable if not finding.variable.startswith("args[") else None
    if flag is not None:
        base = normal_name(flag)
    elif finding.verdict.rule.startswith(("database-url", "jdbc", "url-credentials")):
        base = "DATABASE_URL" if finding.verdict.rule.startswith("database") else "URL"
    else:
        base = normal_name(finding.verdict.rule)
    if not base or not NAME.match(base) or is_reserved(base):
        base = f"MCP_{base or 'SECRET'}"
    return base


def unique_name(base: str, taken: set[str]) -> str:
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}_{number}"
    return name


def _check_new_text(file_plan: FilePlan, left: Sequence[Finding]) -> None:
    """The rewritten text parses (as strict JSON when the file was), and holds no finding
    but those left on purpose."""
    config = file_plan.config
    try:
        document = jsonc.parse(file_plan.new_text, clients.wanted)
        if config.document.strict:  # a byte-order mark is kept, and no JSON text
            json.loads(file_plan.new_text.removeprefix("\ufeff"))
    except ValueError as exc:
        raise KeyrunError(f"{config.file.path}: the rewritten file would not parse ({exc}); "
                          "it was left as it was", "please report this") from None
    kept = {(f.server.project, f.server.name, f.field, f.variable) for f in left}
    for server in clients.servers(document, config.file):
        for finding in findings_in(server):
            if (server.project, server.name, finding.field, finding.variable) not in kept:
                raise KeyrunError(f"{config.file.path}: server {server.label} would still "
                                  f"hold {finding.variable}; the file was left as it was",
                                  "please report this")


def carry_out(file_plan: FilePlan, store: Store, environ: Mapping[str, str],
              protection: Protection) -> None:
    """Store the values, write and check the profile, then replace the file."""
    profile = file_plan.profile
    deadline = Deadline(60)
    for server_plan in file_plan.servers:
        target = source(store.table, file_plan.source, profile.project, server_plan.env,
                        profile.path.parent, environ, f"[sources.{file_plan.source}] of "
                        f"{profile.path}")
        try:
            for move in server_plan.moves:
                name, written = put(target, move.key, move.finding.secret, deadline)
                profile.add_key(server_plan.env, move.key, file_plan.source, name)
                where = target.locate(Request(move.key, target.backend_name(name)))
                protection.stored.append(Stored(move, server_plan.env, name, where, written))
        finally:
            target.close()
    private_directory(profile.path.parent)
    replace_file(profile.path, profile.text().encode("utf-8"), 0o600)
    _read_back(file_plan, environ)
    _replace_config(file_plan)


def _read_back(file_plan: FilePlan, environ: Mapping[str, str]) -> None:
    """Every value must come back through keyrun from the profile just written."""
    from keyrun.reporter import Reporter
    from keyrun.session import Selection, open_session

    for server_plan in file_plan.servers:
        session = open_session(Selection(env=server_plan.env, config=str(file_plan.profile.path)),
                               action="mcp protect", environ=environ,
                               report=Reporter(quiet=True, verbose=False))
        try:
            values = session.values()
        finally:
            session.release()
        session.log()
        wrong = [m.key for m in server_plan.moves
                 if values.get(m.key) != m.finding.secret.reveal()]
        if wrong:
            raise KeyrunError(f"{file_plan.profile.path}: environment {server_plan.env} does "
                              f"not give back {', '.join(wrong)}; "
                              f"{file_plan.config.file.path} was left as it was",
                              f"see: keyrun list -c {file_plan.profile.path} -e "
                              f"{server_plan.env}")


def _replace_config(file_plan: FilePlan) -> None:
    config = file_plan.config
    real = Path(os.path.realpath(config.file.path))
    now = read_config(config.file)
    if not isinstance(now, Config) or now.text != config.text:
        raise ConfigError(f"{config.file.path} changed while keyrun was protecting it; it "
                          "was left as it is (the values are stored and the profile written)",
                          "quit the MCP client, then run keyrun mcp protect again")
    if now.info.st_uid != os.geteuid():
        raise ConfigError(f"{config.file.path} belongs to another user (uid "
                          f"{now.info.st_uid}); it was left as it is",
                          f"make it yours first: chown {os.geteuid()} {real}")
    replace_file(real, file_plan.new_text.encode("utf-8"), stat.S_IMODE(now.info.st_mode))


def preview_change(file_plan: FilePlan, found: Sequence[Finding]) -> str:
    """The change as a unified diff, every value of ``found`` shown as its masked preview;
    and the profile as it would be (each key under its own name)."""
    import difflib

    for server_plan in file_plan.servers:
        for move in server_plan.moves:
            file_plan.profile.add_key(server_plan.env, move.key, file_plan.source, move.key)
    path = str(file_plan.config.file.path)
    old, new = (mask(text, found) for text in (file_plan.config.text, file_plan.new_text))
    diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                path, f"{path} (protected)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


def mask(text: str, found: Sequence[Finding]) -> str:
    """``text`` with every value of ``found`` (as written in JSON, or raw) replaced by its
    preview."""
    for finding in sorted(found, key=lambda f: -len(f.secret.reveal())):
        value = finding.secret.reveal()
        for form in dict.fromkeys((jsonc.encode(value)[1:-1], json.dumps(value)[1:-1], value)):
            text = text.replace(form, finding.verdict.preview)
    return text


def shared_file_warning(file_plan: FilePlan) -> str | None:
    """A project's file in a git work tree: its history may still hold the values, and the
    rewritten entry names this machine's paths."""
    file = file_plan.config.file
    if file.user_level:
        return None
    tree = git_work_tree(Path(os.path.realpath(file.path)).parent)
    if tree is None:
        return None
    return (f"{file.path} is in the git work tree {tree}: if it was ever committed, its "
            "history still holds the values, so rotate them; and keep the rewritten entry "
            "out of commits (it names this machine's paths): for a shared file, use "
            f"{reference_form(file.client, 'NAME')} instead")


def reference_form(client: str, variable: str) -> str:
    """How ``client`` reads a value from elsewhere, in a configuration value."""
    return {clients.VSCODE: '"${input:' + variable.lower() + '}" with an entry in "inputs"',
            clients.CURSOR: f'"${{env:{variable}}}"',
            clients.WINDSURF: f'"${{env:{variable}}}"',
            clients.CLAUDE_CODE: f'"${{{variable}}}"'}.get(client, "a variable reference")


_CLIENT_COMMAND = {clients.CURSOR: "cursor", clients.WINDSURF: "windsurf",
                   clients.CLAUDE_CODE: "claude"}


def remote_advice(finding: Finding) -> str:
    """The client's own way to keep a remote server's header out of its file."""
    server = finding.server
    client = server.file.client
    value = finding.secret.reveal()
    scheme = value.split(" ", 1)[0] + " " if " " in value.strip() else ""
    variable = normal_name(server.name) + "_" + (
        "TOKEN" if normal_name(finding.variable) == "AUTHORIZATION"
        else normal_name(finding.variable))
    if client == clients.VSCODE:
        name = variable.lower().replace("_", "-")
        return (f'add {{"type": "promptString", "id": "{name}", "password": true}} to "inputs" '
                f'and write the header as "{scheme}${{input:{name}}}": VS Code asks once and '
                "keeps the value in its secret storage")
    if client in _CLIENT_COMMAND:
        return (f"write the header as \"{scheme}{reference_form(client, variable)[1:-1]}\" and "
                f"start {client} where {variable} is set, e.g. through a keyrun profile: "
                f"keyrun -e ENV -- {_CLIENT_COMMAND[client]}")
    return (f"{client} does not expand variables in its configuration: add the server in its "
            "settings (Claude Desktop: Connectors) instead, or reach it through a local bridge "
            f'that keyrun can start: "command": "npx", "args": ["-y", "mcp-remote", URL, '
            f'"--header", "{finding.variable}:${{AUTH_HEADER}}"] with AUTH_HEADER in "env", '
            "then run keyrun mcp protect again")
