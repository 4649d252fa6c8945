"""Credential rules for ``keyrun scan``, written from the providers' documented key formats.

Every pattern is linear-time by construction, so a minified 5 MB one-line file cannot stall
the scan: each starts with a literal (so ``re`` searches for it like ``bytes.find``), every
repetition is possessive (``++``) or bounded, and the "not preceded by a token character"
test is done in Python rather than with a look-behind (which would hide the literal prefix).

A pattern names its secret ``(?P<secret>…)``; ``(?P<prefix>…)`` is the documented, non-secret
start of the key that a preview may show; ``(?P<label>…)`` replaces the whole preview (a PEM
header). Keyword rules (``keyword=True``) run on the lower-cased text, so their keywords match
in any case; the secret itself is then sliced from the original bytes.
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

TOKEN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/"
BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
MIN_VALUE_LENGTH = 8  # profile values shorter than this are not searched for (too common)
_ASSIGN = rb"""[a-z0-9_.-]{0,30}["'\]]{0,2}\s{0,5}(?::=|=>|[:=(,])\s{0,5}"""
_CALL_ARG = rb"""(?:[a-z_]{1,20}\s{0,3}=\s{0,3})?["'`]?"""


@dataclass(frozen=True)
class Rule:
    """One credential format.

    ``min_entropy`` (Shannon bits per character of the part after the prefix) and
    ``mixed_case`` (both cases: real keys of these formats are random base62, while hex
    digests and identifiers are not) gate formats loose enough to match ordinary text.
    ``loose`` also rejects values holding short stand-in words (``your``, ``fake``, ``test``):
    right for keyword-gated values, too costly in missed keys for the long prefixed formats.
    ``requires`` must occur somewhere in the (lower-cased) text; ``near`` names a rule whose
    matches this one is searched around (an AWS secret key beside its access key id).
    ``not_after``: bytes that must not precede the match; ``length``: the secret's exact
    length, for a pattern that matches a whole run possessively and checks the length after.
    ``key_file``: the secret is the base64 of a key file, whose fixed headers hold runs of
    one character (an unencrypted OpenSSH key starts ``…AAAAAAAAAAAABAAAA``), so only a
    stand-in word or a value made wholly of one character marks a placeholder.
    """

    id: str
    title: str
    pattern: re.Pattern[bytes]
    keyword: bool = False
    min_entropy: float = 0.0
    mixed_case: bool = False
    loose: bool = False
    requires: bytes = b""
    near: str = ""
    not_after: bytes = TOKEN
    length: int = 0
    key_file: bool = False


class Hit(NamedTuple):
    """A secret found in one text: the rule, the secret's byte span, and a masked preview."""

    rule: str
    start: int
    end: int
    preview: str
    key: str | None = None


def _rule(id: str, title: str, pattern: bytes, **options: object) -> Rule:
    return Rule(id, title, re.compile(pattern), **options)  # type: ignore[arg-type]


_ID_CHARS = rb"(?![A-Za-z0-9_-])"

RULES: tuple[Rule, ...] = (
    _rule("openai-api-key", "OpenAI API key (project, service account, admin)",
          rb"(?P<secret>(?P<prefix>sk-(?:proj|svcacct|admin|None)-)[A-Za-z0-9_-]{40,}+)"),
    _rule("anthropic-api-key", "Anthropic API key",
          rb"(?P<secret>(?P<prefix>sk-ant-(?:api|oat)\d\d-)[A-Za-z0-9_-]{80,}+)"),
    _rule("anthropic-admin-key", "Anthropic Admin API key",
          rb"(?P<secret>(?P<prefix>sk-ant-admin\d\d-)[A-Za-z0-9_-]{80,}+)"),
    _rule("openrouter-api-key", "OpenRouter API key",
          rb"(?P<secret>(?P<prefix>sk-or-v1-)[0-9a-fA-F]{64})" + _ID_CHARS),
    _rule("openai-legacy-api-key", "OpenAI API key (legacy user key)",
          rb"(?P<secret>(?P<prefix>sk-)[A-Za-z0-9]{48})" + _ID_CHARS,
          min_entropy=3.5, mixed_case=True),
    _rule("google-api-key", "Google API key (Gemini, Maps, Firebase…)",
          rb"(?P<secret>(?P<prefix>AIza)[0-9A-Za-z_-]{35})" + _ID_CHARS, min_entropy=3.0),
    _rule("huggingface-token", "Hugging Face access token",
          rb"(?P<secret>(?P<prefix>hf_)[A-Za-z0-9]{34,40}+)" + _ID_CHARS,
          min_entropy=3.5, mixed_case=True),
    _rule("groq-api-key", "Groq API key",
          rb"(?P<secret>(?P<prefix>gsk_)[A-Za-z0-9]{48,56}+)" + _ID_CHARS, min_entropy=3.5),
    _rule("replicate-api-token", "Replicate API token",
          rb"(?P<secret>(?P<prefix>r8_)[A-Za-z0-9]{37})" + _ID_CHARS,
          min_entropy=3.5, mixed_case=True),
    _rule("perplexity-api-key", "Perplexity API key",
          rb"(?P<secret>(?P<prefix>pplx-)[A-Za-z0-9]{40,64}+)" + _ID_CHARS, min_entropy=3.5),
    _rule("xai-api-key", "xAI (Grok) API key",
          rb"(?P<secret>(?P<prefix>xai-)[A-Za-z0-9]{70,100}+)" + _ID_CHARS, min_entropy=3.5),
    _rule("pinecone-api-key", "Pinecone API key",
          rb"(?P<secret>(?P<prefix>pcsk_)[A-Za-z0-9]{4,12}+_[A-Za-z0-9]{32,100}+)" + _ID_CHARS,
          min_entropy=3.5),
    _rule("langsmith-api-key", "LangSmith API key (personal or service)",
          rb"(?P<secret>(?P<prefix>lsv2_(?:pt|sk)_)[0-9a-f]{32}_[0-9a-f]{10})" + _ID_CHARS),
    _rule("aws-access-key-id", "AWS access key id",
          rb"(?P<secret>(?P<prefix>A(?:KIA|SIA|BIA|CCA))[A-Z0-9]{16})(?![A-Za-z0-9])",
          min_entropy=2.5),
    *(_rule("aws-secret-access-key", "AWS secret access key",
            keyword + _ASSIGN + rb"[\"']?(?P<secret>[a-z0-9/+]{40})(?![a-z0-9/+=])",
            keyword=True, min_entropy=4.0, mixed_case=True, loose=True, not_after=b"")
      for keyword in (rb"aws_?secret(?:_?access)?(?:_?key)?", rb"secret_?access_?key")),
    _rule("aws-secret-access-key", "AWS secret access key",
          rb"(?P<secret>[A-Za-z0-9/+]{40,}+)(?!=)", length=40,
          near="aws-access-key-id", min_entropy=4.2, mixed_case=True, loose=True,
          not_after=BASE64),
    _rule("github-token", "GitHub token (personal, OAuth, app, refresh)",
          rb"(?P<secret>(?P<prefix>gh[pousr]_)[A-Za-z0-9]{36,251}+)" + _ID_CHARS,
          min_entropy=3.5),
    _rule("github-fine-grained-pat", "GitHub fine-grained personal access token",
          rb"(?P<secret>(?P<prefix>github_pat_)[A-Za-z0-9_]{70,244}+)" + _ID_CHARS,
          min_entropy=3.5),
    _rule("slack-token", "Slack token (bot, user, app, refresh)",
          rb"(?P<secret>(?P<prefix>xox[abeoprs]-)(?:\d{1,20}-){1,3}[A-Za-z0-9-]{10,250}+)",
          min_entropy=3.0),
    _rule("slack-app-token", "Slack app-level token",
          rb"(?P<secret>(?P<prefix>xapp-)\d-[A-Z0-9]{6,20}+-\d{6,20}+-[a-f0-9]{32,100}+)"),
    _rule("slack-webhook-url", "Slack incoming webhook URL",
          rb"(?P<secret>(?P<prefix>hooks\.slack\.com/(?:services|workflows|triggers)/)"
          rb"[A-Za-z0-9_/-]{20,200}+)", min_entropy=3.0, not_after=b""),
    *(_rule("stripe-live-key", "Stripe live secret or restricted key",
            rb"(?P<secret>(?P<prefix>" + kind + rb"_live_)[A-Za-z0-9]{20,247}+)" + _ID_CHARS,
            min_entropy=3.5)
      for kind in (rb"sk", rb"rk")),
    _rule("doppler-token", "Doppler token (service, personal, service account, CLI, SCIM, audit)",
          rb"(?P<secret>(?P<prefix>dp\.(?:st|pt|sa|ct|scim|audit)\.)"
          rb"(?:[A-Za-z0-9_-]{1,64}+\.)?[A-Za-z0-9]{40,64}+)" + _ID_CHARS, min_entropy=3.5),
    _rule("vault-token", "HashiCorp Vault / OpenBao token (service, batch, recovery)",
          rb"(?P<secret>(?P<prefix>hv[sbr]\.)[A-Za-z0-9_-]{24,}+)",
          min_entropy=3.5, mixed_case=True),
    _rule("gcp-service-account-key", "Google Cloud service-account key (JSON)",
          rb'"private_key"\s{0,5}:\s{0,5}"(?P<label>-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----)'
          rb"(?:\\[rn]){1,3}(?P<secret>[A-Za-z0-9+/=]{40,}+)",
          requires=b"service_account", not_after=b"", key_file=True),
    _rule("private-key", "Private key (PEM, OpenSSH, PGP)",
          rb"(?P<label>-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----)"
          rb"(?:(?:\\[rn]|\s){1,8}[A-Za-z-]{1,30}: [^\r\n\\]{0,200}){0,6}"
          rb"(?:\\[rn]|\s){1,8}(?P<secret>[A-Za-z0-9+/=]{40,}+)", not_after=b"", key_file=True),
    _rule("mistral-api-key", "Mistral AI API key (keyword-gated)",
          rb"mistral" + _ASSIGN + _CALL_ARG + rb"(?P<secret>[a-z0-9]{32})(?![a-z0-9_-])",
          keyword=True, min_entropy=3.7, mixed_case=True, loose=True, not_after=b""),
    *(_rule("cohere-api-key", "Cohere API key (keyword-gated)",
            keyword + _ASSIGN + _CALL_ARG + rb"(?P<secret>[a-z0-9]{40})(?![a-z0-9_-])",
            keyword=True, min_entropy=3.7, mixed_case=True, loose=True, not_after=b"")
      for keyword in (rb"cohere", rb"co_api_key")),
)

RULE_TITLES: Mapping[str, str] = {rule.id: rule.title for rule in RULES} | {
    "profile-value": "A value of this profile's keys"}

# Documented examples (AWS's IAM guide) and words that mark a value as a stand-in.
DOCUMENTED_EXAMPLES = frozenset({
    b"AKIAIOSFODNN7EXAMPLE",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
})
_PLACEHOLDER_WORDS = (rb"(?i)example|placeholder|change_?me|redacted|replace|dummy|sample|insert|"
                      rb"[x*#]{5}|12345678|abcdefgh|qwerty")
_PLACEHOLDER = re.compile(_PLACEHOLDER_WORDS + rb"|(.)\1{7}")
_KEY_FILE_PLACEHOLDER = re.compile(_PLACEHOLDER_WORDS + rb"|\A(.)\1*\Z")
_LOOSE_PLACEHOLDER = re.compile(rb"(?i)your|fake|test|here|token|secret")
ALLOW_MARKER = b"keyrun:allow"


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in Counter(data).values())


def is_placeholder(secret: bytes, loose: bool = False, key_file: bool = False) -> bool:
    """A documented example or a stand-in (``xxxx``, ``your-key``, ``EXAMPLE``), not a key."""
    stand_in = _KEY_FILE_PLACEHOLDER if key_file else _PLACEHOLDER
    if secret in DOCUMENTED_EXAMPLES or stand_in.search(secret):
        return True
    return loose and _LOOSE_PLACEHOLDER.search(secret) is not None


def passes_gates(rule: Rule, body: bytes) -> bool:
    """Whether the part of a match after its prefix looks like a real key for ``rule``."""
    if rule.mixed_case and (body == body.lower() or body == body.upper()):
        return False
    return entropy(body) >= max(rule.min_entropy, 2.5)


def preview(secret: bytes, prefix: int = 0, label: bytes | None = None) -> str:
    """A masked preview: the documented prefix (``prefix`` characters), ``…``, the last
    four characters.

    At least eight characters and at least half of the secret stay hidden; a secret too short
    for that shows its prefix (or nothing) and ``…``. Counted in characters, so a value that
    holds non-ASCII text is never cut inside one.
    """
    if label is not None:
        return label.decode("ascii", "replace") + "…"
    text = secret.decode("utf-8", "replace")
    head = text[:prefix]
    hidden = len(text) - prefix - 4
    if hidden >= max(8, len(text) // 2):
        return head + "…" + text[-4:]
    if len(text) - prefix >= max(8, len(text) // 2):
        return head + "…"
    return "…"


TEXT_BUDGET_SECONDS = 2.0
BUDGET_SECONDS_PER_MB = 0.5  # a large text gets longer: the patterns alone take ~20 ms per MB
_CHECK_EVERY = 512


class Text:
    """One text being scanned, with its lower-cased copy made on first use, and a time budget:
    every pattern is linear, but a file made of hundreds of thousands of key-shaped tokens
    still costs Python work per match, so matching stops (``stopped``) once it is spent."""

    def __init__(self, data: bytes, budget: float | None = None) -> None:
        self.data = data
        self._lower: bytes | None = None
        if budget is None:
            budget = max(TEXT_BUDGET_SECONDS, len(data) / 1e6 * BUDGET_SECONDS_PER_MB)
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.stopped = False

    def out_of_time(self) -> bool:
        self.stopped = self.stopped or time.monotonic() > self.deadline
        return self.stopped

    @property
    def lower(self) -> bytes:
        if self._lower is None:
            self._lower = self.data.lower()
        return self._lower


def match_rule(rule: Rule, text: Text, start: int = 0, end: int | None = None) -> Iterator[Hit]:
    """Every match of one rule in ``text.data[start:end]`` that passes its gates."""
    data = text.data
    haystack = text.lower if rule.keyword else data
    if rule.requires and rule.requires not in text.lower:
        return
    matches = rule.pattern.finditer(haystack, start, len(data) if end is None else end)
    for count, match in enumerate(matches, 1):
        if count % _CHECK_EVERY == 0 and text.out_of_time():
            return
        hit = _hit(rule, data, match)
        if hit is not None:
            yield hit


def _hit(rule: Rule, data: bytes, match: re.Match[bytes]) -> Hit | None:
    begin = match.start()
    if rule.not_after and begin > 0 and data[begin - 1] in rule.not_after:
        return None
    lo, hi = match.span("secret")
    secret = data[lo:hi]
    if rule.length and len(secret) != rule.length:
        return None
    groups = match.re.groupindex
    prefix = match.end("prefix") - lo if "prefix" in groups else 0
    if is_placeholder(secret, rule.loose, rule.key_file) or not passes_gates(rule, secret[prefix:]):
        return None
    label = data[slice(*match.span("label"))] if "label" in groups else None
    start = begin if label is not None else lo
    return Hit(rule.id, start, hi, preview(secret, prefix, label))


def find_rule_hits(text: Text) -> list[Hit]:
    """Every rule's matches in one text, overlaps resolved (earliest, then longest, wins)."""
    hits: list[Hit] = []
    by_rule: dict[str, list[Hit]] = {}
    for rule in RULES:
        if text.out_of_time():
            break
        if rule.near:
            found = list(_near(rule, text, by_rule.get(rule.near, [])))
        else:
            found = list(match_rule(rule, text))
        by_rule.setdefault(rule.id, []).extend(found)
        hits.extend(found)
    return _without_overlaps(hits)


NEAR_WINDOW = 300


def _near(rule: Rule, text: Text, anchors: list[Hit]) -> Iterator[Hit]:
    """Matches within ``NEAR_WINDOW`` bytes of any anchor, overlapping windows merged so
    thousands of anchors in one line cost one pass."""
    windows: list[tuple[int, int]] = []
    for anchor in sorted(anchors, key=lambda h: h.start):
        start = max(0, anchor.start - NEAR_WINDOW)
        end = min(len(text.data), anchor.end + NEAR_WINDOW)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    for start, end in windows:
        yield from match_rule(rule, text, start, end)


def _without_overlaps(hits: list[Hit]) -> list[Hit]:
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if kept and hit.start < kept[-1].end:
            continue
        kept.append(hit)
    return kept


def find_values(data: bytes, values: Mapping[str, bytes]) -> list[Hit]:
    """Every occurrence of each profile value (at least ``MIN_VALUE_LENGTH`` bytes long)."""
    hits: list[Hit] = []
    for key, value in values.items():
        if len(value) < MIN_VALUE_LENGTH:
            continue
        at = data.find(value)
        while at != -1:
            hits.append(Hit("profile-value", at, at + len(value), value_preview(value), key))
            at = data.find(value, at + len(value))
    return hits


def value_preview(value: bytes) -> str:
    """The ``list`` preview of a profile value: ``sk-…a1b2``, only ``…`` under 12 characters."""
    if len(value) < 12:
        return "…"
    return preview(value, 3)


def find_hits(text: Text, values: Mapping[str, bytes]) -> list[Hit]:
    """Rule matches and profile values in one text, sorted by offset. A rule match that is a
    profile value carries the key's name; a value no rule found is reported as ``profile-value``
    (once, where a longer value does not already cover it)."""
    rule_hits = find_rule_hits(text)
    value_hits = sorted(find_values(text.data, values), key=lambda h: (h.start, -h.end))
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
