"""What every remote source shares, written once: the endpoint it contacts, retries with
backoff under the run's one deadline, parallel calls, and the messages for a timeout or a
backend that kept failing.

A source makes one :class:`Runtime` and passes through it:

- every endpoint it is about to contact, before the first request (:meth:`Runtime.endpoint`:
  the one place that sees where a source sends its requests and its credentials, and
  refuses a host the user did not choose — :mod:`keyrun.trust`);
- every call, through :meth:`Runtime.retry`, which gives each attempt the time the deadline
  leaves and asks the source's own ``judge`` what a failure means (a :class:`Verdict`);
  a source whose client raises exceptions it sorts into :class:`Failure` kinds subclasses
  :class:`Api` instead of writing a judge;
- batches of calls, through :meth:`Runtime.parallel`.

Messages name the item and the next step but never the source: SourceError and the core
add the source's name, once.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, NamedTuple, TypeVar

from keyrun.background import Background, wait_all
from keyrun.errors import KeyrunError, SourceError
from keyrun.sources import Deadline, Source, import_sdk
from keyrun.trust import Endpoint as Endpoint  # re-exported: sources import it from here
from keyrun.trust import check

T = TypeVar("T")

RAISE_DEADLINE = "raise the deadline with timeout = \"60s\" in the environment's table"
_MIN_WAIT = 0.05  # less time than this left for a call: it is not made, the source timed out
_BASE = 0.1  # the first pause between attempts, doubled on each, at most _CAP
_CAP = 2.0


class Verdict(NamedTuple):
    """What a failed attempt means: ``error`` is raised, unless ``again`` is set and the
    deadline leaves room for a pause (longer when the server asked: ``retry_after``)."""

    error: BaseException
    again: bool = False
    retry_after: str | None = None


class Busy(Exception):
    """An HTTP answer worth trying again (429, 5xx), raised by an attempt for its judge."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class Runtime:
    """One source's calls under keyrun's deadline.

    ``timed_out`` makes the source's own error for a deadline that ran out (it names the
    backend). Each call is given the deadline's remaining time less ``margin``, so that a
    silent backend is reported by the source, not by the core's timer; a pause between
    attempts is made only if it leaves ``margin + spare`` for the attempt after it.

    ``credential`` says what the source's requests carry ("your Vault token"), for the
    message that refuses an untrusted host; None when they carry nothing a host could use
    (AWS signs each request with SigV4 and never sends its secret key), and then any host
    is contacted. ``public`` lists the service's own hosts (``*.googleapis.com``).
    """

    def __init__(self, source: Source, timed_out: Callable[[Deadline], BaseException], *,
                 margin: float = 0.0, spare: float = 0.1, workers: int = 8,
                 credential: str | None = "its credentials", public: Sequence[str] = ()
                 ) -> None:
        self.source = source
        self.timed_out = timed_out
        self.margin = margin
        self.spare = spare
        self.workers = workers
        self.credential = credential
        self.public = tuple(public)
        self._named: set[Endpoint] = set()

    def sdk(self, module: str) -> ModuleType:
        """The source's SDK, or an error naming the exact pip command that installs it."""
        return import_sdk(module, self.source)

    def endpoint(self, url: str, origin: str) -> Endpoint:
        """The endpoint the source is about to contact, from ``url`` (a trailing ``/``
        dropped; ``origin`` says who chose it). Every source calls this before a client or
        request is made with it: a host the user did not choose raises
        :class:`~keyrun.trust.TrustError`, and ``-v`` names every host that is contacted."""
        endpoint = Endpoint(url.rstrip("/"), origin)
        why = ("its requests are signed; no secret is sent" if self.credential is None
               else check(endpoint, self.source, credential=self.credential,
                          public=self.public))
        if endpoint not in self._named:
            self._named.add(endpoint)
            self.source.detail(f"contacts {endpoint.url} (from {origin}; {why})")
        return endpoint

    def retry(self, deadline: Deadline, attempt: Callable[[float], T],
              judge: Callable[[Exception, int], Verdict]) -> T:
        """``attempt(seconds)`` until it returns. ``judge(exception, attempts so far)`` says
        whether to try again; a KeyrunError (the source's own verdict) ends at once."""
        tries = 0
        while True:
            tries += 1
            left = deadline.remaining() - self.margin
            if left <= _MIN_WAIT:
                raise self.timed_out(deadline)
            try:
                return attempt(left)
            except KeyrunError:
                raise
            except Exception as exc:
                verdict = judge(exc, tries)
            if not (verdict.again and _pause(tries, deadline, verdict.retry_after,
                                             self.margin + self.spare)):
                raise verdict.error

    def parallel(self, deadline: Deadline, tasks: Sequence[Callable[[], T]], *,
                 first_alone: bool = False) -> list[T]:
        """Run ``tasks`` on up to ``workers`` daemon threads (a hung call must not hold up
        keyrun's exit, nor outlast the deadline); results in order; the first exception is
        re-raised. ``first_alone`` finishes the first task before the others start, so
        that one sign-in serves them all."""
        if first_alone and len(tasks) > 1:
            return self.parallel(deadline, tasks[:1]) + self.parallel(deadline, tasks[1:])
        results: list[Any] = [None] * len(tasks)
        errors: list[BaseException] = []
        pending = list(enumerate(tasks))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if not pending or errors:
                        return
                    index, task = pending.pop(0)
                try:
                    results[index] = task()
                except BaseException as exc:
                    with lock:
                        errors.append(exc)

        workers = [Background(work, name=f"keyrun:{self.source.name}")
                   for _ in range(min(self.workers, len(tasks)))]
        wait_all(workers, deadline.remaining)
        if errors:
            raise errors[0]
        if not all(worker.wait(0) for worker in workers):
            raise self.timed_out(deadline)
        return results


def _pause(attempt: int, deadline: Deadline, retry_after: str | None, margin: float) -> bool:
    """Sleep before attempt ``attempt + 1``: exponential backoff with jitter (half to all
    of ``_BASE * 2**(attempt-1)``, at most ``_CAP``), or longer when the server's
    Retry-After asks. False, without sleeping, when the deadline leaves no room for the
    pause and ``margin`` more: the caller reports its failure instead of waiting for the
    deadline."""
    delay = max(min(_CAP, _BASE * 2 ** (attempt - 1)) * (0.5 + random.random() / 2),
                _seconds(retry_after))
    if delay + margin >= deadline.remaining():
        return False
    time.sleep(delay)
    return True


class Failure(Exception):
    """One failed call, sorted by what keyrun does about it (``kind``); ``detail`` is the
    backend's own message (never a value). Subclasses name the kinds that fail every key
    of the source alike."""

    whole_source_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, kind: str, code: str, detail: str = "", attempts: int = 1) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.kind = kind
        self.code = code
        self.detail = detail
        self.attempts = attempts

    @property
    def whole_source(self) -> bool:
        """Credentials, network and timeouts fail every key alike."""
        return self.kind in self.whole_source_kinds

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


class Api(ABC):
    """A backend's client bound to one deadline, for a source that sorts failures into
    :class:`Failure` kinds: a kind in ``max_attempts`` is tried up to that many times, a
    failure of the whole source raises ``source_error(failure)``, and any other failure is
    raised for the caller to judge, key by key (or returned, by :meth:`outcome`)."""

    max_attempts: ClassVar[Mapping[str, int]] = {}

    def __init__(self, runtime: Runtime, deadline: Deadline) -> None:
        self.runtime = runtime
        self.deadline = deadline

    @abstractmethod
    def call(self, name: str, /, **params: Any) -> Any:
        """One call (through :meth:`retry`)."""

    @abstractmethod
    def classify(self, exc: Exception) -> Failure:
        """What a client's exception means."""

    @abstractmethod
    def source_error(self, failure: Failure) -> SourceError:
        """The error of a failure that is the whole source's."""

    def retry(self, attempt: Callable[[float], T]) -> T:
        return self.runtime.retry(self.deadline, attempt, self._judge)

    def outcome(self, name: str, /, **params: Any) -> Any:
        """``call``, with a failure of the item returned instead of raised."""
        try:
            return self.call(name, **params)
        except Failure as failure:
            return failure

    def parallel(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        return self.runtime.parallel(self.deadline, tasks)

    def _judge(self, exc: Exception, tries: int) -> Verdict:
        failure = self.classify(exc)
        failure.attempts = tries
        error = self.source_error(failure) if failure.whole_source else failure
        return Verdict(error, again=tries < self.max_attempts.get(failure.kind, 0))


# messages


def no_answer(deadline: Deadline | None, peer: str = "") -> str:
    """``no answer from PEER within the total deadline of 30s``."""
    of = f" of {deadline.seconds:g}s" if deadline else ""
    return f"no answer{f' from {peer}' if peer else ''} within the total deadline{of}"


def check_reachable(what: str) -> str:
    """The next step after a timeout."""
    return f"check that {what} is reachable; {RAISE_DEADLINE}"


def timed_out(source: str, deadline: Deadline | None, peer: str = "",
              what: str = "the backend") -> SourceError:
    """A whole source that did not answer before the deadline."""
    return SourceError(source, f"timed out: {no_answer(deadline, peer)}", check_reachable(what))


def attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def gave_up(count: int, deadline: Deadline, retry_after: str | None = None) -> str:
    """``3 attempts within the deadline of 10s``, and whether the server asked to wait
    longer than the deadline allowed."""
    asked = (f"; it asked to wait {retry_after}s, past the deadline"
             if _seconds(retry_after) > deadline.remaining() else "")
    return f"{attempts(count)} within the deadline of {deadline.seconds:g}s{asked}"


def short(text: str, limit: int = 300) -> str:
    """A backend's message on one line, bounded."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(retry_after: str | None) -> float:
    try:
        return float(retry_after) if retry_after else 0.0
    except ValueError:  # an HTTP date: the backoff stands
        return 0.0
