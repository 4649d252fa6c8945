"""The command line. ``main`` is the console script.

``keyrun -- cmd`` is the hot path: it is parsed here, without importing Typer or rich,
so that keyrun starts about as fast as python-dotenv's own ``dotenv run``. Every other
command (and ``--help``) goes through the Typer app in ``keyrun.cli.app``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from keyrun.errors import EXIT_KEYRUN_FAILED, EXIT_USAGE, KeyrunError, Terminated, UsageError

# Global options: (short, long, takes a value).
GLOBAL_OPTIONS = (
    ("-e", "--env", True),
    ("-p", "--project", True),
    ("-c", "--config", True),
    ("-q", "--quiet", False),
    ("-v", "--verbose", False),
)
# run's own flags: long name → field of RunOptions. --only takes a value.
RUN_FLAGS = {
    "--allow-missing": "allow_missing",
    "--preserve-env": "preserve_env",
    "--clean-env": "clean_env",
    "--allow-argv-secrets": "allow_argv_secrets",
    "--mask": "mask",
}
_HELP = {"-h", "--help", "--version", "--install-completion", "--show-completion"}
COMMANDS = ("run", "list", "doctor", "set", "init", "log", "scan", "sources")


def _global_option(arg: str) -> tuple[str, bool, str | None] | None:
    """(long name, takes a value, inline value) when ``arg`` is a global option."""
    for short, long, takes_value in GLOBAL_OPTIONS:
        if arg in (short, long):
            return long, takes_value, None
        if takes_value and arg.startswith(long + "="):
            return long, True, arg[len(long) + 1 :]
        if takes_value and arg.startswith(short) and len(arg) > 2:
            return long, True, arg[2:]
    return None


def normalize(args: Sequence[str]) -> list[str]:
    """Move global options written after the command name in front of it, and turn
    ``keyrun [opts] -- cmd`` into ``keyrun [opts] run -- cmd``."""
    head = args[: args.index("--")] if "--" in args else args
    if "--version" in head and not _starts_run_command(head):
        return ["--version"]  # before or after the command name, as the other globals
    globals_: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or _starts_command(rest, arg):
            break
        option = _global_option(arg)
        if option is None:
            rest.append(arg)
        elif option[1] and option[2] is None:
            if i + 1 >= len(args) or args[i + 1] == "--":
                raise UsageError(f"option {option[0]} needs a value",
                                 "e.g. keyrun list -e staging")
            globals_ += [option[0], args[i + 1]]
            i += 1
        else:
            globals_.append(arg if option[2] is None else f"{option[0]}={option[2]}")
        i += 1
    tail = list(args[i:])
    if tail[:1] == ["--"] and _only_run_options(rest):
        rest = ["run", *rest]
    return [*globals_, *rest, *tail]


def _starts_run_command(head: Sequence[str]) -> bool:
    """``keyrun run prog --version``: the flag belongs to prog."""
    if "run" not in head:
        return False
    after = head[head.index("run") + 1 :]
    return any(not word.startswith("-") for word in after[: after.index("--version")])


def _only_run_options(words: list[str]) -> bool:
    """``keyrun --mask --only K -- cmd``: run's options without the word ``run``."""
    i = 0
    while i < len(words):
        if words[i] == "--only":
            i += 2
        elif words[i] in RUN_FLAGS or words[i].startswith("--only="):
            i += 1
        else:
            return False
    return i == len(words)


def _starts_command(parsed: list[str], arg: str) -> bool:
    """After ``run`` and its options, the first plain word is the command (as in env(1))."""
    return parsed[:1] == ["run"] and not arg.startswith("-") and parsed[-1] != "--only"


def _parse_globals(args: list[str]) -> tuple[dict[str, object], list[str]]:
    values: dict[str, object] = {}
    while args and (option := _global_option(args[0])) is not None:
        name, takes_value, inline = option
        if takes_value:
            if inline is None:
                if len(args) < 2:
                    raise UsageError(f"option {name} needs a value")
                inline = args[1]
                args = args[1:]
            values[name[2:]] = inline
        else:
            values[name[2:]] = True
        args = args[1:]
    return values, args


def _is_fast_run(args: list[str]) -> bool:
    head = args[: args.index("--")] if "--" in args else args
    return "run" in head and not any(arg in _HELP for arg in head)


def fast_run(args: list[str]) -> int:
    """``keyrun [globals] run [run options] [--] CMD ARGS…`` without Typer."""
    from keyrun.run import RunOptions, Selection, run_command

    values, args = _parse_globals(args)
    if not args or args[0] != "run":
        raise UsageError(f"unexpected argument {args[0] if args else ''!r}",
                         "run a command as: keyrun [-e ENV] -- COMMAND [ARGS…]")
    args = args[1:]
    flags: dict[str, object] = {}
    only: list[str] = []
    while args and args[0].startswith("-") and args[0] != "--":
        arg = args.pop(0)
        if arg in RUN_FLAGS:
            flags[RUN_FLAGS[arg]] = True
        elif arg == "--only":
            if not args or args[0] == "--":
                raise UsageError("option --only needs a value", "e.g. --only OPENAI_API_KEY")
            only.append(args.pop(0))
        elif arg.startswith("--only="):
            only.append(arg[len("--only="):])
        else:
            raise UsageError(f"no such option for run: {arg}", "see: keyrun run --help")
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise UsageError("no command given", "run a command as: keyrun [-e ENV] -- COMMAND [ARGS…]")
    if flags.get("preserve_env") and flags.get("clean_env"):
        raise UsageError("--preserve-env and --clean-env cannot be used together")
    selection = Selection(
        env=_str(values.get("env")), project=_str(values.get("project")),
        config=_str(values.get("config")), quiet=bool(values.get("quiet")),
        verbose=bool(values.get("verbose")),
    )
    options = RunOptions(only=tuple(only), **flags)  # type: ignore[arg-type]
    return run_command(args, selection, options)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def guarded(action: Callable[[], int]) -> int:
    """The one error boundary: an expected failure prints a message and a hint, never a
    traceback (tracebacks show locals, and locals hold secrets) unless KEYRUN_DEBUG=1."""
    try:
        return action()
    except KeyrunError as exc:
        report_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        import signal

        return _die_of(signal.SIGINT)
    except Terminated as exc:
        return _die_of(exc.number)
    except Exception as exc:
        if os.environ.get("KEYRUN_DEBUG") == "1":
            raise
        print(f"keyrun: internal error: {type(exc).__name__} (run with KEYRUN_DEBUG=1 for "
              "details, and please report it)", file=sys.stderr)
        return EXIT_KEYRUN_FAILED


def _die_of(number: int) -> int:
    """Die of the signal we were sent, as shells expect (a loop stops on Ctrl-C only when
    its command died of SIGINT, not when it exited 130)."""
    import signal

    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
    os.kill(os.getpid(), number)
    return 128 + number


def report_error(exc: KeyrunError) -> None:
    if os.environ.get("KEYRUN_DEBUG") == "1":
        import traceback

        traceback.print_exception(exc)
    print(f"keyrun: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"  hint: {exc.hint}", file=sys.stderr)


def _check_command(args: list[str]) -> None:
    """A program name where a command belongs: say how to run it instead."""
    _, rest = _parse_globals(list(args))
    word = rest[0] if rest else None
    if word is None or word.startswith("-") or word in COMMANDS:
        return
    import difflib

    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"did you mean `keyrun {close[0]}`? " if close else ""
    raise UsageError(f"no such command: {word}",
                     f"{hint}to run a program with the profile's keys: keyrun [-e ENV] -- {word} …")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from keyrun.launch import open_missing_stdio

    open_missing_stdio()
    args = sys.argv[1:] if argv is None else list(argv)
    code = guarded(lambda: _dispatch(normalize(args)))
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    sys.exit(code)


def _dispatch(args: list[str]) -> int:
    _check_command(args)
    if _is_fast_run(args):
        return fast_run(args)
    from keyrun.cli.app import run_app

    return run_app(args)


__all__ = ["EXIT_USAGE", "main", "normalize"]
