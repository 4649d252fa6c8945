"""keyrun's one way to do things at once: a call in a daemon thread.

A daemon thread never holds up keyrun's exit, so a backend that hangs cannot keep keyrun
past its deadline: whoever waits gives up when the deadline has passed and reports a
timeout, and the thread is left behind. Every pool of the core (resolve's fetch per
source, doctor's checks and environments, list's environments) and the sources' runtime
(:meth:`keyrun.sources.runtime.Runtime.parallel`) start their threads here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, cast

K = TypeVar("K")
T = TypeVar("T")


class Background(Generic[T]):
    """``call()`` in a daemon thread, started at once; its value, or the exception it
    raised, for whoever waits."""

    __slots__ = ("_error", "_thread", "_value")

    def __init__(self, call: Callable[[], T], name: str = "keyrun") -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), name=name, daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._value = call()
        except BaseException as exc:  # handed to whoever waits for the result
            self._error = exc

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the call to end, at most ``timeout`` seconds (None: until it ends);
        whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def failed(self) -> bool:
        """Whether the call ended by raising."""
        return self.wait(0) and self._error is not None

    def result(self) -> T:
        """The call's value once it has ended, or what it raised, raised again."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)  # None only where T allows it


def wait_all(calls: Iterable[Background[Any]], remaining: Callable[[], float] | None = None
             ) -> None:
    """Wait for every call, each at most ``remaining()`` seconds when given (a deadline's
    ``remaining``: all of them together end by the deadline)."""
    for call in calls:
        call.wait(None if remaining is None else remaining())


def run_all(calls: Mapping[K, Callable[[], T]], remaining: Callable[[], float] | None = None,
            name: str = "keyrun") -> dict[K, Background[T]]:
    """Start every call at once and wait for them (:func:`wait_all`); by key, in order."""
    started = {key: Background(call, name) for key, call in calls.items()}
    wait_all(started.values(), remaining)
    return started
