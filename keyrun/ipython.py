"""The IPython/Jupyter extension: ``%load_ext keyrun``, then ``%keyrun staging``.

    %keyrun staging              inject the staging profile into os.environ; print the names
    %keyrun                      the default environment
    %keyrun --list [ENV]         where each key comes from and whether it resolves (no values)
    %keyrun -c path/keyrun.toml staging

Notebooks cannot be wrapped by ``keyrun run``; this gives them the same profile with the
same precedence (profile values override what the kernel inherited). Values are never
printed.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from keyrun.errors import KeyrunError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%keyrun", add_help=False)
    parser.add_argument("env", nargs="?")
    parser.add_argument("--list", action="store_true", dest="show")
    parser.add_argument("-c", "--config")
    parser.add_argument("-p", "--project")
    parser.add_argument("--preserve-env", action="store_true")
    return parser


def keyrun_magic(line: str) -> None:
    try:
        args = _parser().parse_args(shlex.split(line))
    except SystemExit:
        print("usage: %keyrun [ENV] [--list] [-c CONFIG] [-p PROJECT] [--preserve-env]")
        return
    try:
        if args.show:
            _show(args.env, args.config, args.project)
        else:
            _inject(args.env, args.config, args.project, args.preserve_env)
    except KeyrunError as exc:
        hint = f"\n  hint: {exc.hint}" if exc.hint else ""
        print(f"keyrun: error: {exc.message}{hint}")


def _inject(env: str | None, config: str | None, project: str | None, preserve: bool) -> None:
    import os

    from keyrun.api import inject

    names = inject(env, config=config, project=project, preserve_env=preserve)
    profile = os.environ.get("KEYRUN_PROFILE", "")
    print(f"keyrun: {profile}: set {', '.join(names) if names else 'no keys'}")


def _show(env: str | None, config: str | None, project: str | None) -> None:
    from keyrun.listing import list_rows
    from keyrun.profile import open_profile
    from keyrun.resolve import fetch_profile

    profile = open_profile(env, config=config, project=project)
    resolution = fetch_profile(profile)
    try:
        rows = list_rows(resolution)
    finally:
        resolution.release()
    print(f"keyrun: {profile.label}")
    for row in rows:
        print(f"  {row.name:<28} {row.status:<9} {row.source or '-'}")


def register(ipython: Any) -> None:
    ipython.register_magic_function(keyrun_magic, magic_kind="line", magic_name="keyrun")
