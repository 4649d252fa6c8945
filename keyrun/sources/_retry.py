"""The one backoff every remote source uses to retry inside keyrun's total deadline."""

from __future__ import annotations

import contextlib
import random
import time

from keyrun.sources import Deadline

BASE = 0.1
CAP = 2.0


def pause_before_retry(attempt: int, deadline: Deadline, *, retry_after: str | None = None,
                       margin: float = 0.1) -> bool:
    """Sleep before attempt ``attempt + 1``: exponential backoff with jitter (half to all
    of ``BASE * 2**(attempt-1)``, at most ``CAP``), or longer when the server's Retry-After
    asks. False, without sleeping, when the deadline leaves no room for the pause and
    ``margin`` more: the caller reports its failure instead of waiting for the deadline."""
    delay = min(CAP, BASE * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
    if retry_after:
        with contextlib.suppress(ValueError):  # an HTTP date: the backoff stands
            delay = max(delay, float(retry_after))
    if delay + margin >= deadline.remaining():
        return False
    time.sleep(delay)
    return True
