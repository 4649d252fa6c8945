"""The command line. ``main`` is the console script.

``keyrun -- cmd`` is the hot path: it is parsed by ``keyrun.cli.grammar``, without importing
Typer or rich, so that keyrun starts faster than python-dotenv's own ``dotenv run``; so is
``keyrun scan``, which a pre-commit hook runs on every commit. Every other command (and
``--help``) goes through the Typer app in ``keyrun.cli.app``, built from the same grammar.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from keyrun.cli.grammar import AppCall, route
from keyrun.errors import EXIT_KEYRUN_FAILED, EXIT_USAGE, KeyrunError, Terminated


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
    from keyrun.printable import printable

    print(printable(f"keyrun: error: {exc.message}"), file=sys.stderr)
    if exc.hint:
        print(printable(f"  hint: {exc.hint}"), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from keyrun.launch import make_undumpable, open_missing_stdio

    make_undumpable()  # first: every command may come to hold a token or a value
    open_missing_stdio()
    args = sys.argv[1:] if argv is None else list(argv)
    code = guarded(lambda: _dispatch(args))
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    sys.exit(code)


def _dispatch(args: list[str]) -> int:
    call = route(args)
    if not isinstance(call, AppCall):
        return call.start()
    from keyrun.cli.app import run_app

    return run_app(call.args)


__all__ = ["EXIT_USAGE", "main"]
