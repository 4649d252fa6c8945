"""A stdio server entry rewritten to start through keyrun, as text edits of its file.

    "command": "<keyrun>", "args": ["-c", <profile>, "-e", <env>, "--", <command>, <args>…]

MCP clients start servers without a login shell, so the command is the absolute path of the
keyrun that runs now. A credential among the arguments cannot stay there: the server then
starts through ``/bin/sh -c 'exec <command> … "$VAR"'``, which puts the value back where it
was from the variable keyrun sets (still in the server's own argv while it runs, as before).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from keyrun.mcp import jsonc
from keyrun.mcp.clients import Server

SHELL = "/bin/sh"


def keyrun_command() -> list[str]:
    """How an MCP client can start this keyrun: the console script's absolute path, else
    this Python with ``-m keyrun``."""
    script = sys.argv[0]
    if os.path.basename(script) == "keyrun":
        found = script if os.sep in script else shutil.which(script)
        if found:
            return [os.path.abspath(found)]
    beside = Path(sys.executable).parent / "keyrun"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "keyrun"]


@dataclass(frozen=True)
class Wrapped:
    """An entry that already starts through keyrun: its profile, environment, and the
    command line after ``--``."""

    profile: str
    env: str
    command: tuple[str, ...]


def wrapped(entry: jsonc.Node) -> Wrapped | None:
    command = entry.get("command")
    args = entry.get("args")
    if command is None or command.kind != "string" or args is None or args.kind != "array":
        return None
    words = [item.value if item.kind == "string" else None for item in args.items]
    if os.path.basename(command.value) != "keyrun":
        if words[:2] != ["-m", "keyrun"]:
            return None
        words = words[2:]
    if len(words) < 5 or words[0] != "-c" or words[2] != "-e" or words[4] != "--":
        return None
    profile, env = words[1], words[3]
    if profile is None or env is None or None in words[5:]:
        return None
    return Wrapped(profile, env, tuple(w for w in words[5:] if w is not None))


def launch_args(launcher: Sequence[str], profile: Path, env: str) -> list[str]:
    return [*launcher[1:], "-c", str(profile), "-e", env, "--"]


def entry_edits(text: str, server: Server, *, launcher: Sequence[str], profile: Path,
                env: str, removed_env: Sequence[str], arg_variables: Mapping[int, str]
                ) -> list[jsonc.Edit]:
    """The edits that make ``server`` start through keyrun: ``removed_env`` leave its
    ``env``, the arguments at the indexes of ``arg_variables`` come from those variables."""
    edits = env_edits(text, server.entry, removed_env)
    if wrapped(server.entry) is not None:
        return edits
    command = server.entry.member("command")
    assert command is not None
    args = server.entry.get("args")
    prefix = [jsonc.encode(word) for word in launch_args(launcher, profile, env)]
    original = [text[command.value.start:command.value.end],
                *(text[item.start:item.end] for item in (args.items if args else ()))]
    if arg_variables:
        original = [jsonc.encode(word) for word in
                    (SHELL, "-c", shell_script(server, arg_variables))]
    items = [*prefix, *original]
    edits.append(jsonc.replace(command.value, jsonc.encode(launcher[0])))
    if args is not None:
        edits.append(jsonc.replace(args, jsonc.array_text(text, args, items)))
    else:
        edits.append(jsonc.insert_after(text, command, "args",
                                        jsonc.array_text(text, None, items)))
    return edits


def env_edits(text: str, entry: jsonc.Node, removed: Sequence[str]) -> list[jsonc.Edit]:
    """``removed`` taken out of the entry's ``env``; ``env`` itself when nothing is left."""
    if not removed:
        return []
    env = entry.member("env")
    assert env is not None
    gone = {i for i, m in enumerate(env.value.members) if m.key in removed}
    if len(gone) == len(env.value.members):
        return jsonc.remove_members(text, entry, {entry.members.index(env)})
    return jsonc.remove_members(text, env.value, gone)


def shell_script(server: Server, variables: Mapping[int, str]) -> str:
    """``exec <command> <args>…`` with the arguments at ``variables``' indexes read from
    those variables (``--api-key="$API_KEY"``)."""
    command = server.entry.get("command")
    args = server.entry.get("args")
    assert command is not None
    words = [shlex.quote(str(command.value))]
    for index, item in enumerate(args.items if args else ()):
        text = item.value if item.kind == "string" else str(item.value)
        variable = variables.get(index)
        if variable is None:
            words.append(shlex.quote(text))
            continue
        prefix = text.partition("=")[0] + "=" if text.startswith("-") and "=" in text else ""
        words.append((shlex.quote(prefix) if prefix else "") + f'"${variable}"')
    return "exec " + " ".join(words)
