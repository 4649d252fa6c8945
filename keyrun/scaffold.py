"""``keyrun init``: a keyrun.toml for this directory, and .env files kept out of git."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from keyrun.config import CONFIG_NAME, EXAMPLE_NAME, read_example
from keyrun.dotenvfile import parse_dotenv
from keyrun.environ import NAME, is_reserved, looks_secret
from keyrun.errors import KeyrunError
from keyrun.ownership import read_trusted, write_own

GITIGNORE_LINES = (".env", ".env.*", "!.env.example")


@dataclass(frozen=True)
class Scaffold:
    config: Path
    keys: tuple[str, ...]
    keys_from: str | None
    gitignore: Path
    gitignore_added: tuple[str, ...]
    left_out: tuple[str, ...] = ()  # names found that no environment variable can have


def init_project(root: Path, *, force: bool = False, project: str | None = None,
                 config: Path | None = None) -> Scaffold:
    """keyrun.toml in ``root`` (or at ``config``: a file, or a directory to hold it),
    with ``project`` as the project's name (default: the directory's)."""
    if config is not None and config.is_dir():
        config = config / CONFIG_NAME
    config = config or root / CONFIG_NAME
    home = config.parent
    if config.exists() and not force:
        raise KeyrunError(f"{config} already exists",
                          "edit it, or pass --force to write a new one over it")
    found, origin, stray = _initial_keys(home)
    keys = [key for key in found if NAME.match(key) and not is_reserved(key)]
    left_out = tuple(_shown(key, found[key]) for key in found if key not in keys) + tuple(
        f"line {line} (a value without a name)" for line in stray)
    write_own(config, render_config(project or home.name or "project", keys,
                                    keychain=keychain_usable()))
    gitignore, added = _ignore_env_files(home)
    return Scaffold(config, tuple(keys), origin, gitignore, tuple(added), left_out)


def _initial_keys(root: Path) -> tuple[dict[str, int], str | None, tuple[int, ...]]:
    """Names (and their lines) from .env.example, else from .env (names only: values are
    never copied); and the lines of .env.example that hold no name."""
    example = read_example(root)
    if example.names or example.stray:
        return example.names, EXAMPLE_NAME, example.stray
    env_file = root / ".env"
    read = read_trusted(env_file, "this .env file")
    if read is not None:
        names: dict[str, int] = {}
        for entry in parse_dotenv(read[0].decode("utf-8"), str(env_file), names_only=True):
            names.setdefault(entry.key, entry.line)
        return names, ".env", ()
    return {}, None, ()


def _shown(name: str, line: int) -> str:
    """A name left out, as init may print it: not when it looks like a credential."""
    return f"line {line} (a credential?)" if looks_secret("", name) else name


def keychain_usable() -> bool:
    """Whether this machine has an OS keychain keyring can use. Without one (CI,
    containers) a keyring source fails closed, so init leaves it out of the sources."""
    from keyrun.sources.registry import source_class

    return source_class("keyring", where="keyrun init").unusable_reason() is None


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def render_config(project: str, keys: list[str], *, keychain: bool = True) -> str:
    lines = [
        "# keyrun.toml: the keys this project needs and where each environment keeps them.",
        "# Reference: https://github.com/keyrun/keyrun#configuration",
        f"project = {json.dumps(project)}",
        'default_env = "dev"',
        "",
        "[keys]",
    ]
    if keys:
        lines += [f"{_toml_key(key)} = {{}}" for key in keys]
    else:
        lines.append('# OPENAI_API_KEY = { description = "the LLM provider key" }')
    lines += [
        "",
        "[sources.local]",
        'type = "dotenv"',
        'path = ".env"',
        "",
        "[sources.keychain]",
        'type = "keyring"',
        "",
        "[env.dev]",
        'sources = ["local", "keychain"]   # the first source that has a key wins' if keychain
        else 'sources = ["local"]   # add "keychain" on a machine with an OS keychain',
        "",
    ]
    return "\n".join(lines)


def _ignore_env_files(root: Path) -> tuple[Path, list[str]]:
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    present = {line.strip() for line in text.splitlines()}
    added = [line for line in GITIGNORE_LINES if line not in present]
    if ".env.*" in added and "!.env.example" not in added:
        added.append("!.env.example")  # a negation only counts after the pattern it undoes
    if added:
        prefix = "" if not text or text.endswith("\n") else "\n"
        block = "# secrets: keyrun reads them, git must not\n" + "\n".join(added) + "\n"
        write_own(path, prefix + block, append=True)
    return path, added
