"""keyrun's own messages on stderr: the one sink every warning goes through.

A command makes one :class:`Reporter` from its ``-q``/``-v`` and hands its ``warn`` to
whatever may have something to say (the profile, the sources through ``Context.warn``,
the access log, lease revocation). Code reached without one (a library call, a test)
uses :func:`default`.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from keyrun.printable import printable

if TYPE_CHECKING:
    from keyrun.mask import MaskSet


class Reporter:
    """Warnings, notes and ``-v`` details on stderr (a command owns stdout). ``once``
    drops a warning already given (a command that resolves a profile more than once)."""

    def __init__(self, quiet: bool = False, verbose: bool = False, *, once: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.masks: MaskSet | None = None  # set when the run is masked: so are these lines
        self._once: set[str] | None = set() if once else None
        self._lock = threading.Lock()

    def _print(self, line: str) -> None:
        from keyrun.progress import above

        line = printable(line)
        with above():  # not after a spinner's half-drawn line
            if self.masks is not None:
                sys.stderr.buffer.write(self.masks.mask(f"{line}\n".encode()))
                sys.stderr.flush()
                return
            print(line, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        if self.quiet or not self._first(message):
            return
        self._print(f"keyrun: warning: {message}")

    def note(self, message: str) -> None:
        if not self.quiet:
            self._print(f"keyrun: {message}")

    def always(self, message: str) -> None:
        """What even -q must not hide (SPEC §5: a nested switch says so)."""
        if self._first(message):
            self._print(f"keyrun: {message}")

    def detail(self, message: str) -> None:
        if self.verbose and self._first(message):
            self._print(f"keyrun: {message}")

    def _first(self, message: str) -> bool:
        if self._once is None:
            return True
        with self._lock:
            if message in self._once:
                return False
            self._once.add(message)
            return True


_DEFAULT = Reporter()


def default() -> Reporter:
    """The sink of code that was given none: never quiet, nothing masked."""
    return _DEFAULT
