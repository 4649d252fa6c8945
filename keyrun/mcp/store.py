"""Where ``keyrun mcp protect`` puts the values it moves out of MCP configurations.

``keychain`` (the default): the OS keychain, one item per key under the service
``keyrun/mcp/<server>``. ``dotenv:PATH``: a .env file readable by its owner alone and outside
any git work tree. ``SOURCE``: a writable source of the keyrun.toml given with ``-c``, copied
into the profile (its templates then see the profile's project and the server's environment).

A value is never written over a different one already stored under the same name (another
client's server of the same name, another project's key in a shared file): it gets the name
``KEY_2`` (``KEY_3``…) instead, recorded in the profile as the key's ``name``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyrun.errors import ConfigError, UsageError
from keyrun.secret import Secret
from keyrun.sources import Context, Deadline, Item, Problem, Request, Source

DEFAULT_PROJECT = "mcp"
KEYCHAIN = "keychain"
DOTENV = "dotenv:"
MAX_NAMES = 100


@dataclass(frozen=True)
class Store:
    """A source table for the profile, the project a new profile gets, and words for it."""

    name: str
    table: Mapping[str, Any]
    project: str
    label: str


def choose_store(to: str, *, config: str | None, project: str | None,
                 environ: Mapping[str, str], cwd: Path) -> Store:
    """``--to``'s store, checked usable before anything is moved."""
    if config is not None and (to == KEYCHAIN or to.startswith(DOTENV)):
        raise UsageError("-c names the keyrun.toml whose source --to SOURCE writes to",
                         "with --to keychain or --to dotenv:PATH, leave -c out")
    if to == KEYCHAIN:
        store = Store(KEYCHAIN, {"type": "keyring", "service": "keyrun/{project}/{env}"},
                      project or DEFAULT_PROJECT, "the OS keychain")
    elif to.startswith(DOTENV):
        store = _dotenv_store(to.removeprefix(DOTENV), cwd, project)
    else:
        store = _config_store(to, config, project, environ)
    _check_usable(store)
    return store


def _dotenv_store(given: str, cwd: Path, project: str | None) -> Store:
    if not given:
        raise UsageError("--to dotenv: needs a file", "e.g. --to dotenv:~/.config/mcp.env")
    path = Path(os.path.abspath(cwd / Path(given).expanduser()))
    work_tree = git_work_tree(path.parent)
    if work_tree is not None:
        raise UsageError(f"{path} is inside the git work tree {work_tree}, where a commit "
                         "could take the values along", "choose a file outside any "
                         "repository, e.g. --to dotenv:~/.config/keyrun/mcp.env")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_IMODE(info.st_mode) & 0o077:
        raise UsageError(f"{path} may be read by others (mode {stat.S_IMODE(info.st_mode):o})",
                         f"chmod 600 {path}")
    return Store("file", {"type": "dotenv", "path": str(path)}, project or DEFAULT_PROJECT,
                 str(path))


def git_work_tree(directory: Path) -> Path | None:
    """The git work tree ``directory`` is in (a ``.git`` here or above), if any."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _config_store(name: str, config: str | None, project: str | None,
                  environ: Mapping[str, str]) -> Store:
    from keyrun.config import load_config

    if config is None:
        raise UsageError(f"--to {name}: a source of which keyrun.toml?",
                         f"name it with -c: keyrun mcp protect -c keyrun.toml --to {name} "
                         "(or --to keychain, --to dotenv:PATH)")
    loaded = load_config(None, config, environ)
    spec = loaded.sources.get(name)
    if spec is None:
        raise UsageError(f"--to {name}: {loaded.label} has no source named {name!r}",
                         f"sources: {', '.join(loaded.sources) or 'none'}")
    table = {"type": spec.type, **spec.settings}
    if spec.type == "dotenv":  # its path is relative to that keyrun.toml, not to the profile
        table["path"] = str(loaded.root / str(spec.settings.get("path", ".env")))
    return Store(name, table, project or loaded.project, f"{name} ({loaded.label})")


def _check_usable(store: Store) -> None:
    from keyrun.sources.registry import source_class

    cls = source_class(str(store.table["type"]), where=f"--to {store.name}")
    if not cls.writable:
        raise UsageError(f"--to {store.name}: a {cls.type_name} source cannot be written",
                         "choose a writable one (keychain, dotenv:PATH, or a keyring, "
                         "dotenv, vault, aws, gcp, azure or doppler source)")
    reason = cls.unusable_reason()
    if reason is not None:
        raise ConfigError(f"--to {store.name}: {reason}",
                          "start one, or keep the values in a file outside any git work tree: "
                          "--to dotenv:PATH")


def source(table: Mapping[str, Any], name: str, project: str, env: str, root: Path,
           environ: Mapping[str, str], where: str) -> Source:
    from keyrun.profile import make_source

    settings = {key: value for key, value in table.items() if key != "type"}
    return make_source(str(table["type"]), name, settings, where,
                       Context(project, env, root, environ))


def put(target: Source, key: str, value: Secret, deadline: Deadline) -> tuple[str, bool]:
    """Store ``value`` for ``key``: under the name ``key`` when that holds nothing or the
    same value, else ``key_2``, ``key_3``… Returns the name, and whether it was written (an
    equal value already there is used as it is)."""
    for number in range(1, MAX_NAMES + 1):
        name = key if number == 1 else f"{key}_{number}"
        request = Request(key, target.backend_name(name))
        outcome = target.fetch([request], deadline).get(key, Problem.missing())
        if isinstance(outcome, Item):
            if outcome.value.reveal() == value.reveal():
                return name, False
            continue
        if outcome.kind != "missing":
            raise ConfigError(f"{target.name}: cannot check {target.locate(request)} before "
                              f"writing it: {outcome.message}")
        target.write(request, value, deadline)
        return name, True
    raise ConfigError(f"{target.name}: {key} and {MAX_NAMES - 1} other names for it already "
                      "hold other values", "remove the ones nothing uses")
