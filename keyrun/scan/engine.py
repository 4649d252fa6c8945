"""Matching one text against a rule set and the profile's values.

Every built-in pattern is linear-time by construction, so a minified 5 MB one-line file
cannot stall the scan: each starts with a literal where the format has one (``re`` then
searches for it like ``bytes.find``), repetitions are possessive (``++``) or bounded, and the
"not preceded by a token character" test is done in Python rather than with a look-behind
(which would hide the literal prefix). A text also has a time budget, for the rare file made
of hundreds of thousands of key-shaped tokens.

Secrets travel encoded too: a run of base64 that decodes to text (a Kubernetes Secret's
value, a service-account file pasted into a CI variable, a JWT encoded once more) is decoded
and searched again, and what is found there is reported at the run.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from keyrun.preview import preview
from keyrun.scan.checks import b64decode, variable_name
from keyrun.scan.rules import TOKEN, Rule, RuleSet, passes_gates

MIN_VALUE_LENGTH = 8  # profile values shorter than this are not searched for (too common)
ALLOW_MARKER = b"keyrun:allow"


class Hit(NamedTuple):
    """A secret found in one text: the rule, the byte span to report, a masked preview, the
    SHA-256 of the secret (for fingerprints; the secret itself is not kept), and the profile
    key whose value it is."""

    rule: str
    start: int
    end: int
    preview: str
    digest: bytes
    key: str | None = None


TEXT_BUDGET_SECONDS = 2.0
BUDGET_SECONDS_PER_MB = 0.5  # a large text gets longer: the patterns alone take ~20 ms per MB
_CHECK_EVERY = 512


class Text:
    """One text being scanned, with its lower-cased copy (for keywords), and a time budget:
    matching stops (``stopped``) once it is spent."""

    def __init__(self, data: bytes, budget: float | None = None) -> None:
        self.data = data
        self.lower = data.lower()
        if budget is None:
            budget = max(TEXT_BUDGET_SECONDS, len(data) / 1e6 * BUDGET_SECONDS_PER_MB)
        self.budget = budget
        self.deadline = float("inf")  # set when matching starts
        self.stopped = False
        self._decoded: list[tuple[int, int, bytes]] | None = None

    def keyword_spans(self, keywords: Iterable[bytes]) -> list[tuple[int, int]]:
        """Where the keywords occur in the lower-cased text."""
        spans = []
        for keyword in keywords:
            at = self.lower.find(keyword)
            while at != -1:
                spans.append((at, at + len(keyword)))
                at = self.lower.find(keyword, at + 1)
        return spans

    def decoded(self) -> list[tuple[int, int, bytes]]:
        """The base64 runs of this text that decode to text (``decoded_runs``), found once."""
        if self._decoded is None:
            self._decoded = decoded_runs(self.data)
        return self._decoded

    def start(self) -> None:
        """Start the budget's clock (finding which rules a text needs is not counted)."""
        if self.deadline == float("inf"):
            self.deadline = time.monotonic() + self.budget

    def out_of_time(self) -> bool:
        self.stopped = self.stopped or time.monotonic() > self.deadline
        return self.stopped


def match_rule(rule: Rule, text: Text, start: int = 0, end: int | None = None,
               rules: RuleSet | None = None) -> Iterator[Hit]:
    """Every match of one rule in ``text.data[start:end]`` that passes its gates (and, for a
    fallback rule, that no provider's rule of ``rules`` judges instead)."""
    matches = rule.pattern.finditer(text.data, start, len(text.data) if end is None else end)
    return _gated(rule, text, matches, rules)


def match_from_keywords(rule: Rule, text: Text, rules: RuleSet | None = None
                        ) -> Iterator[Hit]:
    """The matches of a ``keyword_first`` rule, which begin where one of its keywords does:
    tried only there, so a pattern with no literal start costs nothing where its keywords
    are not."""
    return _gated(rule, text, _matches_from_keywords(rule, text), rules)


def _matches_from_keywords(rule: Rule, text: Text) -> Iterator[re.Match[bytes]]:
    inside = 0  # keywords before this lie inside a match already made
    for at, _ in sorted(text.keyword_spans(rule.keywords)):
        if at < inside:
            continue
        match = rule.pattern.match(text.data, at)
        if match is not None:
            inside = match.end()
            yield match


def _gated(rule: Rule, text: Text, matches: Iterator[re.Match[bytes]],
           rules: RuleSet | None) -> Iterator[Hit]:
    for count, match in enumerate(matches, 1):
        if count % _CHECK_EVERY == 0 and text.out_of_time():
            return
        if rule.fallback and rules is not None and rules.judged_elsewhere(
                match.group("secret" if "secret" in match.re.groupindex else 0),
                variable_name(match)):
            continue
        hit = _hit(rule, text.data, match)
        if hit is not None:
            yield hit


def _hit(rule: Rule, data: bytes, match: re.Match[bytes]) -> Hit | None:
    begin = match.start()
    if rule.boundary and begin > 0 and data[begin - 1] in TOKEN:
        return None
    groups = match.re.groupindex
    lo, hi = match.span("secret") if "secret" in groups else match.span()
    secret = data[lo:hi]
    prefix = max(match.end("prefix") - lo, 0) if "prefix" in groups else 0
    if not passes_gates(rule, secret, secret[prefix:]):
        return None
    if rule.check is not None and not rule.check(secret, match):
        return None
    label = match.group("label") if "label" in groups else None
    if label is not None:  # the whole block is the finding: no other rule's inside it
        shown = label.decode("ascii", "replace") + "…"
        return Hit(rule.id, begin, match.end(), shown, digest(secret))
    return Hit(rule.id, lo, hi, masked(secret, prefix), digest(secret))


def digest(secret: bytes) -> bytes:
    """The SHA-256 of a secret (hashlib is loaded by the first finding, not by every scan)."""
    from hashlib import sha256

    return sha256(secret).digest()


def masked(secret: bytes, prefix: int = 0) -> str:
    """The preview of a secret: its documented prefix (``prefix`` bytes) and last four
    characters, within the one preview policy (``keyrun.preview``)."""
    head = len(secret[:prefix].decode("utf-8", "replace"))
    return preview(secret.decode("utf-8", "replace"), head)


def find_rule_hits(text: Text, rules: RuleSet, decode: bool = True) -> list[Hit]:
    """Every rule's matches in one text (and in the base64 it holds, when ``decode``),
    overlaps resolved: the earliest, then the longest, then the first rule wins."""
    hits: list[Hit] = []
    by_rule: dict[str, list[Hit]] = {}
    chosen = rules.to_run(text.lower)
    text.start()
    for rule in chosen:
        if text.out_of_time():
            break
        if rule.near is not None:
            anchors = [(hit.start, hit.end) for hit in by_rule.get(rule.near, [])]
            found = list(_within(rule, text, _windows(anchors, NEAR_WINDOW, NEAR_WINDOW,
                                                     len(text.data)), rules))
        elif rule.keyword_first and rule.keywords:
            found = list(match_from_keywords(rule, text, rules))
        elif rule.keywords and len(text.data) > LONG_TEXT:
            found = list(_within(rule, text, _windows(text.keyword_spans(rule.keywords),
                                                     KEYWORD_BEFORE, KEYWORD_AFTER,
                                                     len(text.data)), rules))
        else:
            found = list(match_rule(rule, text, rules=rules))
        by_rule.setdefault(rule.id, []).extend(found)
        hits.extend(found)
    if decode:  # first: what an encoded secret is says more than that it is encoded
        hits = [*_in_decoded(text, rules), *hits]
    return _without_overlaps(hits)


NEAR_WINDOW = 300  # a "near" rule's matches lie this close to one of its anchor rule's
# In a text longer than this, a rule with keywords is matched only this close to them: a
# minified bundle holds a keyword somewhere, and a pattern without a literal start costs
# a pass over megabytes.
LONG_TEXT = 64 * 1024
KEYWORD_BEFORE, KEYWORD_AFTER = 4096, 4096


def _windows(spans: Iterable[tuple[int, int]], before: int, after: int, size: int
             ) -> list[tuple[int, int]]:
    """The spans widened by ``before``/``after`` bytes, overlapping ones merged (thousands
    of anchors in one line cost one pass)."""
    windows: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        start, end = max(0, first - before), min(size, last + after)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    return windows


def _within(rule: Rule, text: Text, windows: list[tuple[int, int]], rules: RuleSet
            ) -> Iterator[Hit]:
    for start, end in windows:
        yield from match_rule(rule, text, start, end, rules)


def _without_overlaps(hits: list[Hit]) -> list[Hit]:
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if kept and hit.start < kept[-1].end:
            continue
        kept.append(hit)
    return kept


# -- base64 that holds text ---------------------------------------------------------------------

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{24,}+={0,2}")
_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def decoded_runs(data: bytes) -> list[tuple[int, int, bytes]]:
    """Each run of base64 in ``data`` that decodes to text: its span and the text. A run whose
    first bytes decode to binary (an image, a digest) costs one small decode."""
    runs = []
    for match in _BASE64_RUN.finditer(data):
        run = match.group()
        head = b64decode(run[:12])
        if head is None or not _PRINTABLE.issuperset(head):
            continue
        decoded = b64decode(run)
        if decoded is not None and sum(b not in _PRINTABLE for b in decoded) * 20 <= len(decoded):
            runs.append((match.start(), match.end(), decoded))
    return runs


def _in_decoded(text: Text, rules: RuleSet) -> Iterator[Hit]:
    for start, end, decoded in text.decoded():
        inner = Text(decoded, budget=max(min(text.deadline - time.monotonic(), text.budget), 0.0))
        for hit in find_rule_hits(inner, rules, decode=False):
            yield hit._replace(start=start, end=end)


# -- the profile's own values ---------------------------------------------------------------------

def find_values(data: bytes, values: Mapping[str, bytes]) -> list[Hit]:
    """Every occurrence of each profile value (at least ``MIN_VALUE_LENGTH`` bytes long)."""
    hits: list[Hit] = []
    for key, value in values.items():
        if len(value) < MIN_VALUE_LENGTH:
            continue
        at = data.find(value)
        if at == -1:
            continue
        shown, hashed = value_preview(value), digest(value)
        while at != -1:
            hits.append(Hit("profile-value", at, at + len(value), shown, hashed, key))
            at = data.find(value, at + len(value))
    return hits


def value_preview(value: bytes) -> str:
    """The preview of a profile value (``sk-…a1b2``), by the one preview policy."""
    return preview(value.decode("utf-8", "replace"), 3)


def find_hits(text: Text, rules: RuleSet, values: Mapping[str, bytes]) -> list[Hit]:
    """Rule matches and profile values in one text (and in the base64 it holds), sorted by
    offset. A rule match that is a profile value carries the key's name; a value no rule found
    is reported as ``profile-value`` (once, where a longer value does not already cover it)."""
    rule_hits = find_rule_hits(text, rules)
    found = find_values(text.data, values)
    if values:
        found += [hit._replace(start=start, end=end) for start, end, decoded in text.decoded()
                  for hit in find_values(decoded, values)]
    value_hits = sorted(found, key=lambda h: (h.start, -h.end))
    if not value_hits:
        return rule_hits
    by_value, by_rule = _Spans(value_hits), _Spans(rule_hits)
    merged: list[Hit] = []
    for hit in rule_hits:
        value = by_value.overlapping(hit.start, hit.end)
        merged.append(hit._replace(key=value.key) if value else hit)
    reach = -1
    for value_hit in value_hits:
        if value_hit.end > reach and by_rule.overlapping(value_hit.start, value_hit.end) is None:
            merged.append(value_hit)
        reach = max(reach, value_hit.end)
    return sorted(merged, key=lambda h: h.start)


class _Spans:
    """Finds a hit overlapping a span among hits sorted by start: a bisect, then a look-back
    no longer than the longest hit."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.starts = [hit.start for hit in hits]
        self.longest = max((hit.end - hit.start for hit in hits), default=0)

    def overlapping(self, start: int, end: int) -> Hit | None:
        i = bisect.bisect_left(self.starts, end) - 1
        while i >= 0 and self.hits[i].start > start - self.longest:
            if self.hits[i].end > start:
                return self.hits[i]
            i -= 1
        return None
