"""Progress on stderr while keyrun waits for a backend, only on a terminal (SPEC §3).

One :class:`Progress` serves a whole command: each thing it waits for (a fetch, a
doctor's sources check, a ``set`` writing to a remote store) is a :meth:`~Progress.task`,
and one spinner line names every task under way, so that ``doctor`` fetching three
environments at once shows one line, not three fighting for it. Nothing is drawn for
work done within ``delay`` seconds, nor when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from keyrun.printable import printable

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_CLEAR = "\r\x1b[K"
_DRAWING = threading.Lock()  # one line on the terminal, whoever writes to it
_SHOWN: set[Progress] = set()  # progress lines on screen now (under _DRAWING)


class Progress:
    """A spinner line on ``stream`` (stderr) naming the tasks under way; ``enabled``
    False (``-q``, a library call) shows nothing at all."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True,
                 delay: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and _is_terminal(self.stream)
        self.delay = delay
        self._tasks: list[str] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def task(self, label: str) -> Iterator[None]:
        """Name ``label`` on the spinner line while the block runs."""
        if not self.enabled:
            yield
            return
        with self._changed:
            self._tasks.append(label)
            if self._thread is None:
                self._thread = threading.Thread(target=self._spin, name="keyrun:progress",
                                                daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._changed:
                self._tasks.remove(label)
                thread = self._thread if not self._tasks else None
                if thread is not None:
                    self._thread = None
                self._changed.notify_all()
            if thread is not None:
                thread.join()

    def _spin(self) -> None:
        me = threading.current_thread()

        def done() -> bool:
            return self._thread is not me  # the last task ended (another may start anew)

        frame = 0
        with self._changed:
            self._changed.wait_for(done, self.delay)
        while True:
            with self._changed:
                if done():
                    break
                line = "; ".join(dict.fromkeys(self._tasks))
            self._draw(f"{_FRAMES[frame % len(_FRAMES)]} {printable(line)}…")
            frame += 1
            with self._changed:
                self._changed.wait_for(done, 0.08)
        with _DRAWING:
            if self in _SHOWN:
                _SHOWN.discard(self)
                self._write(_CLEAR)

    def _draw(self, line: str) -> None:
        width = _width(self.stream)
        if len(line) > width - 1:  # a wrapped line could not be cleared with \r
            line = line[: max(width - 2, 1)] + "…"
        with _DRAWING:
            _SHOWN.add(self)
            self._write(f"\r{line}\x1b[K")

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


@contextlib.contextmanager
def above() -> Iterator[None]:
    """Write a line of output with no progress line in its way: the spinner is cleared
    first and drawn again on its next frame (the Reporter's warnings)."""
    with _DRAWING:
        for progress in list(_SHOWN):
            progress._write(_CLEAR)
        _SHOWN.clear()
        yield


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (OSError, ValueError):
        return False


def _width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


NO_PROGRESS = Progress(enabled=False)


def shown(progress: bool | Progress, *, quiet: bool, remote: bool = True) -> Progress:
    """Where work shows its progress: a new line for True, the command's own Progress
    shared, nowhere under ``-q`` or for local sources alone (SPEC §3: while remote sources
    are fetched)."""
    if quiet or not remote or progress is False:
        return NO_PROGRESS
    return Progress() if progress is True else progress
