"""How keyrun was installed, and so the command that adds an extra to *this* install.

``pip install 'keyrun[aws]'`` is wrong advice for pipx (its venv is not the user's), for
``uv tool`` and ``uv pip`` (uv installs no pip) and for a clone (keyrun is not on PyPI
under that path). What installed keyrun is read from its own installation: the
``INSTALLER`` file of its dist-info, its ``direct_url.json`` (a local directory, editable
or not), and its environment (pipx and uv tool keep one venv per tool, marked by the file
they write there; a venv that is not the active one is named, since a bare ``pip`` would
install elsewhere).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # importlib.metadata is imported only when a hint is made: not on a run
    from importlib import metadata


class Installation(NamedTuple):  # not a dataclass: 5 ms of every start
    installer: str  # "pip", "pipx", "uv", "uv-tool" (or whatever INSTALLER says)
    directory: Path | None = None  # installed from a local directory (a clone)
    editable: bool = False
    python: str | None = None  # the interpreter of a venv that is not the active one


def detect(dist: metadata.Distribution | None = None, prefix: str | None = None
           ) -> Installation:
    """What installed keyrun (or ``dist``) into the environment at ``prefix`` (default:
    the running interpreter's)."""
    from importlib import metadata

    if dist is None:
        try:
            dist = metadata.distribution("keyrun")
        except metadata.PackageNotFoundError:
            return Installation("pip")
    written = (dist.read_text("INSTALLER") or "pip").strip().lower() or "pip"
    root = Path(prefix or sys.prefix)
    parts = root.resolve().parts
    if (root / "pipx_metadata.json").is_file() or ("pipx" in parts and "venvs" in parts):
        installer = "pipx"
    elif (root / "uv-receipt.toml").is_file() or ("uv" in parts and "tools" in parts):
        installer = "uv-tool"
    else:
        installer = written
    directory, editable = _local_directory(dist.read_text("direct_url.json"))
    python = None
    if installer in ("pip", "uv") and (root / "pyvenv.cfg").is_file() and not _active(root):
        python = sys.executable if prefix is None else os.fspath(root / "bin" / "python")
    return Installation(installer, directory, editable, python)


def _active(venv: Path) -> bool:
    """Whether ``venv`` is the activated one, which a bare ``pip`` or ``uv pip`` installs into."""
    active = os.environ.get("VIRTUAL_ENV")
    try:
        return active is not None and os.path.samefile(active, venv)
    except OSError:
        return False


def _local_directory(direct_url: str | None) -> tuple[Path | None, bool]:
    import json
    from urllib.parse import unquote, urlparse

    try:
        data = json.loads(direct_url or "null")
    except ValueError:
        return None, False
    if not isinstance(data, dict) or not str(data.get("url", "")).startswith("file://"):
        return None, False
    path = Path(unquote(urlparse(data["url"]).path))
    if not path.is_dir():  # a local wheel or sdist file: its name says nothing reusable
        return None, False
    editable = bool((data.get("dir_info") or {}).get("editable"))
    return path, editable


def extra_requirements(distribution: str, extra: str) -> list[str]:
    """The distributions ``pip install '<distribution>[<extra>]'`` adds (names only; a
    marker other than the extra is not evaluated)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires(distribution) or []
    except PackageNotFoundError:
        return []
    names = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())
        extras = re.findall(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if name and normal_name(extra) in map(normal_name, extras):
            names.append(name.group())
    return names


def normal_name(name: str) -> str:
    """A distribution or extra name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def add_extra_command(extra: str, installation: Installation | None = None) -> str:
    """The command that adds keyrun's ``extra`` to the install that is running."""
    found = installation or detect()
    target = f"keyrun[{extra}]"
    if found.directory is not None:
        here = Path.cwd().resolve() == found.directory.resolve()
        target = f"{'.' if here else os.fspath(found.directory)}[{extra}]"
    flag = "-e " if found.editable else ""
    if found.installer == "pipx":
        if found.directory is None:
            packages = " ".join(extra_requirements("keyrun", extra)) or f"'{target}'"
            return f"pipx inject keyrun {packages}"
        return f"pipx install --force {flag}'{target}'"
    if found.installer == "uv-tool":
        return f"uv tool install {flag}'{target}'"
    if found.installer == "uv":
        return f"uv pip install{_python_option(found)} {flag}'{target}'"
    return f"{_pip(found)} install {flag}'{target}'"


def add_package_command(requirement: str, installation: Installation | None = None) -> str:
    """The command that installs ``requirement`` (another distribution, e.g. a plugin's
    ``dist[extra]``) beside the keyrun that is running."""
    found = installation or detect()
    if found.installer == "pipx":
        return f"pipx inject keyrun '{requirement}'"
    if found.installer == "uv-tool":
        keyrun = "keyrun" if found.directory is None else f"'{found.directory}'"
        return f"uv tool install {keyrun} --with '{requirement}'"
    if found.installer == "uv":
        return f"uv pip install{_python_option(found)} '{requirement}'"
    return f"{_pip(found)} install '{requirement}'"


def _pip(found: Installation) -> str:
    return "pip" if found.python is None else f"{shlex.quote(found.python)} -m pip"


def _python_option(found: Installation) -> str:
    return "" if found.python is None else f" --python {shlex.quote(found.python)}"
