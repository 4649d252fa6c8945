"""A spinner on stderr while remote sources are fetched, only on a terminal (SPEC §3)."""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType
from typing import TextIO

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Spinner:
    """Shows ``message`` with a spinner after ``delay`` seconds, and clears it on exit."""

    def __init__(self, message: str, stream: TextIO | None = None, delay: float = 0.2) -> None:
        self.message = message
        self.stream = stream or sys.stderr
        self.delay = delay
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False

    def __enter__(self) -> Spinner:
        if self.stream.isatty() and os.environ.get("TERM") != "dumb":
            self._thread = threading.Thread(target=self._spin, name="keyrun:spinner",
                                            daemon=True)
            self._thread.start()
        return self

    def _spin(self) -> None:
        frame = 0
        if self._done.wait(self.delay):
            return
        while not self._done.is_set():
            self.stream.write(f"\r{_FRAMES[frame % len(_FRAMES)]} {self.message}")
            self.stream.flush()
            self._shown = True
            frame += 1
            self._done.wait(0.08)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
