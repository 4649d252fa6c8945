"""The one preview policy for a secret shown on screen (``list``, ``scan``, ``mcp scan``).

A preview never shows more than a quarter of a value, and never more than 4 characters of a
value under 16 characters: its first characters (a documented, non-secret prefix such as
``sk-`` or ``ghp_``) and its last 4, as many of them as that allows, joined by ``…``.
"""

from __future__ import annotations

ELLIPSIS = "…"
TAIL = 4


def shown_at_most(length: int) -> int:
    """How many characters of a value of ``length`` characters a preview may show."""
    return min(length // 4, 4) if length < 16 else length // 4


def preview(value: str, head: int = 3) -> str:
    """``value`` masked: up to ``head`` leading characters and the last 4, within the budget
    of :func:`shown_at_most`; ``…`` alone when nothing can be shown."""
    budget = shown_at_most(len(value))
    head = min(head, budget)
    tail = TAIL if head + TAIL <= budget else 0
    return value[:head] + ELLIPSIS + (value[-tail:] if tail else "")
