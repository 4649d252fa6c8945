"""The IPython/Jupyter extension: ``%load_ext keyrun``, then ``%keyrun staging``.

Notebooks cannot be wrapped by ``keyrun run``; this gives them the same profile with the
same precedence (profile values override what the kernel inherited). Values are never
printed. A failure raises IPython's UsageError, so the cell fails and "Run All" stops
there. Leased credentials (Vault's dynamic secrets) are renewed while the kernel lives
and revoked when it exits (``keyrun.release()`` revokes them earlier).
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, NamedTuple, NoReturn

from keyrun.errors import KeyrunError

USAGE = ("%keyrun [ENV | -e ENV] [--list] [-c CONFIG] [-p PROJECT] [--preserve-env] "
         "[--allow-missing]")

HELP = f"""usage: {USAGE}

Inject a keyrun profile into this kernel's environment (os.environ); values are never shown.

  %keyrun staging              inject the staging profile; print the names it set
  %keyrun -e staging           the same
  %keyrun                      the default environment
  %keyrun --list [ENV]         where each key comes from and whether it resolves (no
                               values); without ENV, the environment injected last
  -c, --config PATH            the keyrun.toml to use (default: found from the directory)
  -p, --project NAME           the project name its sources see
  --preserve-env               a variable the kernel already has keeps its value
  --allow-missing              inject what resolves, even if required keys are missing
  -h, --help                   this help (so does %keyrun?)
"""


class Injected(NamedTuple):
    """The profile ``%keyrun`` injected last, which ``%keyrun --list`` shows by default."""

    env: str
    config: str | None
    project: str | None


_last: list[Injected] = []


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"keyrun: {message}\nusage: {USAGE}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%keyrun", add_help=False)
    parser.add_argument("env", nargs="?")
    parser.add_argument("-e", "--env", dest="env_option")
    parser.add_argument("--list", action="store_true", dest="show")
    parser.add_argument("-c", "--config")
    parser.add_argument("-p", "--project")
    parser.add_argument("--preserve-env", action="store_true")
    parser.add_argument("--allow-missing", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def _fail(message: str) -> NoReturn:
    from IPython.core.error import UsageError

    raise UsageError(message)


def keyrun_magic(line: str) -> None:
    try:
        args = _parser().parse_args(shlex.split(line))
    except ValueError as exc:  # shlex: an unterminated quote
        _fail(f"keyrun: {exc}\nusage: {USAGE}")
    if args.help:
        print(HELP, end="")
        return
    if args.env and args.env_option and args.env != args.env_option:
        _fail(f"keyrun: two environments named: {args.env} and -e {args.env_option}\n"
              f"usage: {USAGE}")
    env = args.env or args.env_option
    try:
        if args.show:
            _show(*_listed(env, args.config, args.project))
        else:
            _inject(env, args.config, args.project, args.preserve_env, args.allow_missing)
    except KeyrunError as exc:
        hint = f"\n  hint: {exc.hint}" if exc.hint else ""
        _fail(f"keyrun: {exc.message}{hint}")


def _listed(env: str | None, config: str | None, project: str | None
            ) -> tuple[str | None, str | None, str | None]:
    """What ``--list`` shows: what it names, else the profile injected last."""
    if env is not None or not _last or config not in (None, _last[-1].config):
        return env, config, project
    last = _last[-1]
    return last.env, last.config, project or last.project


def _inject(env: str | None, config: str | None, project: str | None, preserve: bool,
            allow_missing: bool) -> None:
    from keyrun.api import resolve, set_environ

    spelling = " ".join(["%keyrun --allow-missing", *([env] if env else [])])
    resolution = resolve(env, config=config, project=project, allow_missing=allow_missing,
                         action="inject", for_environ=True, allow_missing_spelling=spelling)
    names = set_environ(resolution, preserve_env=preserve)
    _last[:] = [Injected(resolution.profile.env.name, config, project)]
    label = resolution.profile.label
    print(f"keyrun: {label}: set {', '.join(names) if names else 'no keys'}")


def _show(env: str | None, config: str | None, project: str | None) -> None:
    from keyrun.listing import list_rows
    from keyrun.session import Selection, open_session

    session = open_session(Selection(env, project, config), action="list", warn_unlogged=False)
    resolution = session.fetch()
    try:
        rows = list_rows(resolution)
    finally:
        session.release()
    session.log()
    print(f"keyrun: {session.profile.label}")
    for row in rows:
        print(f"  {row.name:<28} {row.status:<9} {row.source or '-'}")


keyrun_magic.__doc__ = HELP  # what %keyrun? shows


def register(ipython: Any) -> None:
    ipython.register_magic_function(keyrun_magic, magic_kind="line", magic_name="keyrun")
