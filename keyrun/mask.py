"""Masking: replace every secret value, and its common encodings, in a byte stream.

``MaskSet(values)`` registers the variants of each value (``variants``) and compiles
one multi-pattern matcher; ``MaskSet.stream()`` gives a ``Masker`` that filters one stream.

What a masker promises (SPEC §5, issue 6):

- Bytes outside a masked span pass through unchanged: nothing is decoded, no byte is
  added or removed (invalid UTF-8, NUL, ``\\r``).
- The output does not depend on how the input was split across ``feed`` calls, one byte
  at a time included: a masker holds back only a *live prefix* (the longest tail of what
  it has seen that is a proper prefix of some variant), and emits it once it can no
  longer become a match.
- Matches that overlap or nest are masked as one span, named after the longest match in
  it, so no tail of a secret is ever left showing. Each span becomes ``<KEY_NAME>``.
- ``release()`` (after a short silence) lets out at most the first ``RELEASE`` (4) bytes
  of a held prefix, so that a prompt ending in a few characters that could begin a value
  does not hang, and never more of it however the writes are spaced: a value the command
  prints in full shows at most its first 4 bytes before its label (SPEC §5). The released
  bytes stay in the matcher, so the rest is masked when it comes.
- A value written with gaps in it — line breaks (base64 wrapped into lines), a terminal's
  escape (a colour inside it) — is masked from its first byte to its last (``gapped``),
  when at least ``SEED`` (5) of its bytes come before the first gap, or any before an
  escape.
- Memory is bounded by the longest variant (plus ``GAPPED_HOLD`` while a value is followed
  across gaps), however long the stream.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol
from urllib.parse import quote, quote_plus

from keyrun.errors import KeyrunError

# Values shorter than this are not masked: they would mask ordinary text (doctor's
# short-values check says so). Counted in characters, as SPEC §5 states it.
MIN_LENGTH = 6

# Every variant is at least MIN_LENGTH bytes long, so every variant has a prefix of this
# length; occurrences of those prefixes are where a live prefix can start.
_PREFIX = MIN_LENGTH

ENGINES = ("hyperscan", "ahocorasick", "find")


def maskable(value: str) -> bool:
    """Whether a value is long enough to be masked."""
    return len(value) >= MIN_LENGTH


# Variants ---------------------------------------------------------------------------

_URL_SAFE_SETS = ("", "/", "!*'()")  # strict; Python's quote(); JavaScript's encodeURIComponent
_PERCENT_ESCAPE = re.compile(rb"%[0-9A-F]{2}")


def variants(value: str) -> frozenset[bytes]:
    """The byte strings that reveal ``value``: raw, per line, with ``\\r\\n``, JSON-escaped
    (also every character as ``\\uXXXX``), URL-encoded, HTML entities, hex (also in
    spaced pairs and in ``xxd``'s groups of four), UTF-16, base64, base64url and base32
    (upper case, as RFC 4648 writes it) at every alignment, and inside ``Authorization:
    Basic``. Empty for a value too short to mask; never a form made of whitespace or with
    fewer than ``MIN_LENGTH`` other bytes."""
    if not maskable(value):
        return frozenset()
    raw = value.encode("utf-8", "surrogateescape")
    found = {raw, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")}
    found |= _line_forms(raw)
    found |= _json_forms(value) | _json_every_char(value) | _url_forms(value)
    found |= _html_forms(value) | _utf16_forms(value)
    found |= _hex_forms(raw)
    found |= _encoded_forms(raw, base64.b64encode, 6)
    found |= _encoded_forms(raw, base64.urlsafe_b64encode, 6)
    # Authorization: Basic base64("user:secret"), or base64("secret:") for an API key
    # sent as the user name with an empty password.
    found |= _encoded_forms(b":" + raw, base64.b64encode, 6)
    found |= _encoded_forms(raw + b":", base64.b64encode, 6)
    found |= _encoded_forms(raw, base64.b32encode, 5)
    return frozenset(form for form in found if _substantial(form))


_WHITESPACE = b" \t\r\n\v\f"
_PEM_ARMOR = re.compile(rb"-----(?:BEGIN|END) [A-Z0-9 ]+-----")


def _substantial(form: bytes) -> bool:
    """Enough bytes besides whitespace (and the NULs of UTF-16) to mask only the value."""
    return len(form.translate(None, _WHITESPACE + b"\0")) >= MIN_LENGTH


def _line_forms(raw: bytes) -> set[bytes]:
    """Each line of a multi-line value, without the indentation and trailing blanks that
    ordinary text shares, and not a PEM ``-----BEGIN …-----`` line, which is not secret."""
    if b"\n" not in raw:
        return set()
    lines = {line.strip(_WHITESPACE) for line in raw.split(b"\n")}
    return {line for line in lines if not _PEM_ARMOR.fullmatch(line)}


def _hex_forms(raw: bytes) -> set[bytes]:
    """Hex, lower and upper case: plain, in pairs spaced as ``hexdump``/``od`` print them,
    and in ``xxd``'s groups of two bytes (the value may begin in the middle of a group)."""
    forms = set()
    for text in (raw.hex().encode(), raw.hex().upper().encode()):
        pairs = [text[i:i + 2] for i in range(0, len(text), 2)]
        forms |= {text, b" ".join(pairs)}
        for first in (0, 1):
            groups = pairs[:first] + [b"".join(pairs[i:i + 2])
                                      for i in range(first, len(pairs), 2)]
            forms.add(b" ".join(groups))
    return forms


def _utf16_forms(value: str) -> set[bytes]:
    """UTF-16 in either byte order, without the NUL at the edge that the neighbouring
    character may not share."""
    try:
        little = value.encode("utf-16-le")
        big = value.encode("utf-16-be")
    except UnicodeEncodeError:  # a lone surrogate
        return set()
    return {little.rstrip(b"\0"), big.lstrip(b"\0")}


def _html_forms(value: str) -> set[bytes]:
    """HTML escaping as templates write it (Python's ``html.escape``, Jinja's ``&#39;``),
    and every character as a numeric entity. (The html module would import its 2,000
    named entities at every masked start.)"""
    plain = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    quoted = plain.replace('"', "&quot;")
    texts = {plain, quoted.replace("'", "&#x27;"), quoted.replace("'", "&#39;")}
    texts |= {_each_char(value, form) for form in ("&#{:d};", "&#x{:x};", "&#x{:X};")}
    return {text.encode("utf-8", "surrogateescape") for text in texts}


_EACH_CHAR: dict[str, dict[int, str]] = {}


def _each_char(value: str, form: str) -> str:
    """``value`` with every character written as ``form.format(code point)`` (a table for
    the first 256, which str.translate applies in C: this runs for every value at every
    masked start)."""
    table = _EACH_CHAR.get(form)
    if table is None:
        table = _EACH_CHAR[form] = {code: form.format(code) for code in range(256)}
    if max(value, default="\0") < "\u0100":
        return value.translate(table)
    return "".join(form.format(ord(char)) for char in value)


# JSON escapes beyond what JSON requires: Go's encoding/json (HTML-safe: < > & and the line
# separators), .NET's System.Text.Json (also ' + ` and the quote; non-ASCII escaped).
_GO_ESCAPED = "<>&\u2028\u2029"
_DOTNET_ESCAPED = "<>&'+`"
_JSON_ESCAPE = re.compile(r"\\(?:\\|u[0-9a-f]{4})")  # escaped backslashes consumed in pairs


def _json_forms(value: str) -> set[bytes]:
    """JSON string escaping as emitters write it: Python's (ASCII-only or not), Go's, .NET's,
    with lower- and upper-case hex digits, with and without ``\\/``."""
    ascii_only = json.dumps(value)[1:-1]
    unicode = json.dumps(value, ensure_ascii=False)[1:-1]
    dotnet = _escape_chars(ascii_only, _DOTNET_ESCAPED).replace('\\"', "\\u0022")
    texts = {ascii_only, unicode, _escape_chars(unicode, _GO_ESCAPED)}
    texts |= {_upper_hex(text) for text in (*texts, dotnet)}
    texts |= {text.replace("/", "\\/") for text in texts}
    return {text.encode("utf-8", "surrogateescape") for text in texts}


def _json_every_char(value: str) -> set[bytes]:
    """JSON with every character ``\\u``-escaped (UTF-16 code units), as obfuscating
    emitters write it."""
    if max(value, default="\0") < "\u0100":
        lower, upper = _each_char(value, "\\u{:04x}"), _each_char(value, "\\u{:04X}")
    else:
        units = value.encode("utf-16-be", "surrogatepass").hex()
        lower = "".join(f"\\u{units[i:i + 4]}" for i in range(0, len(units), 4))
        upper = lower.upper().replace("\\U", "\\u")
    return {lower.encode(), upper.encode()}


def _escape_chars(text: str, chars: str) -> str:
    """``\\uXXXX`` for each of ``chars`` (none of which occurs inside a JSON escape)."""
    for char in chars:
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _upper_hex(text: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: m.group()[:2] + m.group()[2:].upper(), text)


def _url_forms(value: str) -> set[bytes]:
    forms = set()
    for safe in _URL_SAFE_SETS:
        for encode in (quote, quote_plus):
            encoded = encode(value, safe=safe, errors="surrogateescape").encode()
            forms |= {encoded, _PERCENT_ESCAPE.sub(lambda m: m.group().lower(), encoded)}
    return forms


def _encoded_forms(raw: bytes, encode: Callable[[bytes], bytes], bits: int) -> set[bytes]:
    """For each alignment of ``raw`` inside a longer base64 (``bits`` = 6) or base32 (5)
    stream: the characters that depend on ``raw`` alone, and the same through the end of
    a stream that ends with it (base64 with and without padding)."""
    forms = set()
    group = 3 if bits == 6 else 5  # bytes per group of characters
    for offset in range(group):
        encoded = encode(b"\0" * offset + raw)
        start = -(-8 * offset // bits)  # the first character with no bit from before
        stable_end = 8 * (offset + len(raw)) // bits  # the last with no bit from after
        forms |= {encoded[start:stable_end], encoded[start:].rstrip(b"=")}
        if bits == 6:  # base32's padding (up to six "=") is left out: it tells nothing
            forms.add(encoded[start:])
    return forms


# Gaps a value may be written with (``MaskSet.gapped``): a terminal's CSI escape (colour,
# bold: ESC [ parameters final), a line break. A prefix held across them is held from its
# start, at most GAPPED_HOLD bytes back, across at most MAX_GAPS of them.
_GAP = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\r?\n")
_PARTIAL_GAP = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*)?|\r")  # the start of a gap, at the end
MAX_GAPS = 256
GAPPED_HOLD = 1 << 16


# Matching engines --------------------------------------------------------------------

Occurrence = tuple[int, int, int]  # start, end, pattern index
Piece = bytes | memoryview  # of a masker's output


class Engine(Protocol):
    """Finds every occurrence of every pattern in a buffer, overlapping ones included."""

    def scan(self, data: bytes) -> list[Occurrence]: ...


class HyperscanEngine:
    """Intel Hyperscan in block mode (the fastest; wheels for x86-64 and macOS).

    It looks for the first ``SEED`` bytes of each pattern (every pattern is longer), then
    compares the patterns that begin so whole: a few thousand 5-byte literals compile
    several times faster than the patterns themselves, which every masked start pays
    (measured, benchmarks/RESULTS.md: 5 bytes compiled in a third of the time of 6, and
    scanned almost as fast; 4 scanned at half the speed), and the same database finds
    where a live prefix may begin (``starts``). Every byte is written as ``\\xHH`` (the
    binding's literal API stops at NUL)."""

    SEED = 5
    KEY = 16

    def __init__(self, patterns: Sequence[bytes]) -> None:
        import hyperscan  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self._patterns = list(patterns)
        # Expression id -> the patterns that begin with its seed: those shorter than KEY,
        # and the others by their first KEY bytes (many values share a seed: "sk-pro").
        seeds: dict[bytes, tuple[list[int], dict[bytes, list[int]]]] = {}
        for index, pattern in enumerate(self._patterns):
            short, long = seeds.setdefault(pattern[: self.SEED], ([], {}))
            if len(pattern) < self.KEY:
                short.append(index)
            else:
                long.setdefault(pattern[: self.KEY], []).append(index)
        self._seeded = list(seeds.values())
        self.orphans: list[int] = []  # of the last scan: seeds with no whole pattern there
        self.escapes: list[int] = []  # of the last scan: where a terminal escape (CSI) begins
        self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        # Every seed is SEED bytes long: its start is its end minus SEED, so no start-of-
        # match tracking (HS_FLAG_SOM_LEFTMOST costs most of the compile time).
        self._database.compile(expressions=[*(_escaped(seed) for seed in seeds), rb"\x1b\["],
                               ids=list(range(len(seeds) + 1)))

    def scan(self, data: bytes) -> list[Occurrence]:
        found: list[Occurrence] = []
        orphans: list[int] = []
        escapes: list[int] = []
        patterns, seeded, seed, key = self._patterns, self._seeded, self.SEED, self.KEY
        escape_id = len(seeded)

        def on_match(index: int, _start: int, end: int, flags: int, context: object) -> None:
            if index == escape_id:
                escapes.append(end - 2)
                return
            start = end - seed
            short, long = seeded[index]
            whole = False
            for full in (*short, *long.get(data[start:start + key], ())):
                pattern = patterns[full]
                if data.startswith(pattern, start):
                    found.append((start, start + len(pattern), full))
                    whole = True
            if not whole:
                orphans.append(start)

        self._database.scan(data, match_event_handler=on_match)
        self.orphans, self.escapes = orphans, escapes
        return found

    def starts(self, data: bytes) -> list[int]:
        """Where the first ``SEED`` bytes of some pattern occur in ``data``."""
        found: list[int] = []
        seed = self.SEED

        def on_match(index: int, _start: int, end: int, flags: int, context: object) -> None:
            found.append(end - seed)

        self._database.scan(data, match_event_handler=on_match)
        return found


_HEX_ESCAPES = [b"\\x%02x" % byte for byte in range(256)]


def _escaped(literal: bytes) -> bytes:
    return b"".join([_HEX_ESCAPES[byte] for byte in literal])


class AhoCorasickEngine:
    """The Rust ``aho-corasick`` crate (``ahocorasick-rs``) as a DFA; wheels everywhere."""

    def __init__(self, patterns: Sequence[bytes]) -> None:
        import ahocorasick_rs

        self._automaton = ahocorasick_rs.BytesAhoCorasick(
            patterns, implementation=ahocorasick_rs.Implementation.DFA)

    def scan(self, data: bytes) -> list[Occurrence]:
        return [(start, end, index) for index, start, end
                in self._automaton.find_matches_as_indexes(data, overlapping=True)]


class FindEngine:
    """``bytes.find`` per pattern: slow, dependency-free, and simple enough to trust."""

    def __init__(self, patterns: Sequence[bytes]) -> None:
        self._patterns = list(patterns)

    def scan(self, data: bytes) -> list[Occurrence]:
        found = []
        for index, pattern in enumerate(self._patterns):
            start = data.find(pattern)
            while start >= 0:
                found.append((start, start + len(pattern), index))
                start = data.find(pattern, start + 1)
        return found


_ENGINE_CLASSES: dict[str, Callable[[Sequence[bytes]], Engine]] = {
    "hyperscan": HyperscanEngine,
    "ahocorasick": AhoCorasickEngine,
    "find": FindEngine,
}


def make_engine(patterns: Sequence[bytes], engine: str | None = None) -> Engine:
    """The named engine, or the fastest one that loads here."""
    if engine is not None:
        if engine not in _ENGINE_CLASSES:
            raise ValueError(f"unknown masking engine {engine!r}: choose {', '.join(ENGINES)}")
        try:
            return _ENGINE_CLASSES[engine](patterns)
        except ImportError as exc:
            raise KeyrunError(f"masking engine {engine!r} is not installed ({exc.name})",
                              f"pip install {_PACKAGES[engine]}") from None
    for name in ("hyperscan", "ahocorasick"):
        try:
            return _ENGINE_CLASSES[name](patterns)
        except ImportError:
            continue
        except Exception:  # noqa: S112 - hyperscan refuses CPUs without SSSE3; use the next
            continue
    return FindEngine(patterns)


_PACKAGES = {"hyperscan": "hyperscan", "ahocorasick": "ahocorasick-rs", "find": "keyrun"}


# The compiled set --------------------------------------------------------------------


class MaskSet:
    """The variants of a profile's values, compiled once and shared by every stream.

    ``MaskSet(values)`` takes key name → value; a pattern that two keys share is named
    after the first key in name order. Holds secrets: its ``repr`` names keys only.
    ``engine`` picks the matcher (``ENGINES``); by default the fastest one installed."""

    def __init__(self, values: Mapping[str, str], engine: str | None = None) -> None:
        owner: dict[bytes, str] = {}
        for name in sorted(values):
            for form in sorted(variants(values[name])):
                owner.setdefault(form, name)
        self.keys = tuple(sorted({name for name in values if maskable(values[name])}))
        self.skipped = tuple(sorted(name for name in values if not maskable(values[name])))
        self.patterns = tuple(owner)
        self.owners = tuple(owner[p] for p in self.patterns)
        self.longest = max(map(len, self.patterns), default=0)
        self._labels = tuple(f"<{name}>".encode() for name in self.owners)
        self._sorted = tuple(sorted(self.patterns))
        self._index = {pattern: index for index, pattern in enumerate(self.patterns)}
        prefixes = sorted({p[:_PREFIX] for p in self.patterns})
        self._short = frozenset(p[:n] for p in prefixes for n in range(1, _PREFIX))
        self._engine: Engine | None = None
        self._starts: Callable[[bytes], Iterable[int]] | None = None
        self.engine = ""
        if self.patterns:
            self._engine = make_engine(self.patterns, engine)
            self.engine = _engine_name(self._engine)
            self._starts = _prefix_starts(
                self._engine, sorted({p[:HyperscanEngine.SEED] for p in self.patterns}))

    def __repr__(self) -> str:
        return f"MaskSet(keys={self.keys!r}, patterns={len(self.patterns)}, engine={self.engine!r})"

    def __len__(self) -> int:
        return len(self.patterns)

    def label(self, index: int) -> bytes:
        """What replaces a span whose longest match is pattern ``index``."""
        return self._labels[index]

    def stream(self) -> Masker:
        """A masker for one stream (stdout and stderr each get their own)."""
        return Masker(self)

    def mask(self, data: bytes) -> bytes:
        """Mask a whole buffer at once (keyrun's own messages, for one)."""
        masker = self.stream()
        return masker.feed(data) + masker.close()

    def occurrences(self, data: bytes) -> list[Occurrence]:
        """Every occurrence, by start, the longest first among those starting together."""
        if self._engine is None:
            return []
        found = self._engine.scan(data)
        found.sort(key=lambda o: (o[0], -o[1]))
        return found

    def orphans(self, data: bytes, found: list[Occurrence]) -> list[int]:
        """Where a pattern's first ``SEED`` bytes occur in ``data`` (just scanned:
        ``found``) and no whole pattern does; and where fewer of them stand before a
        terminal escape (rare: looked for one by one)."""
        if isinstance(self._engine, HyperscanEngine):
            starts, escapes = list(self._engine.orphans), self._engine.escapes
        elif self._starts is None:
            return []
        else:
            whole = {start for start, _end, _index in found}
            starts = [start for start in self._starts(data) if start not in whole]
            escapes = [match.start() for match in re.finditer(rb"\x1b\[", data)]
        for escape in escapes:  # a terminal's escape (CSI), not any ESC byte
            starts += [start for start in range(max(0, escape - HyperscanEngine.SEED + 1), escape)
                       if data[start:escape] in self._short]
        return starts

    def gapped(self, data: bytes, starts: Iterable[int]) -> tuple[list[Occurrence], int | None]:
        """Values written with gaps in them — a colour escape, a line break (base64 wrapped
        at 64 or 76 columns) — from each of ``starts``: the occurrences found across gaps
        (from their first byte to their last), and where one that may still come begins,
        if one is still possible at the end of ``data``."""
        found: list[Occurrence] = []
        live: int | None = None
        for start in starts:
            stop = min(len(data), start + self.longest)
            gaps = [at for at in (data.find(b"\n", start, stop), data.find(b"\r", start, stop),
                                  data.find(b"\x1b", start, stop)) if at >= 0]
            first = min(gaps, default=stop)
            at_gap = bool(_GAP.match(data, first) or _PARTIAL_GAP.fullmatch(data, first))
            if not gaps or not at_gap or not self._is_live(data[start:first]):
                continue  # no gap while it is a prefix (most seeds: a few bytes by chance)
            end, index, open_end = self._across_gaps(data, start)
            if index is not None:
                found.append((start, end, index))
            elif open_end and start >= len(data) - GAPPED_HOLD:
                live = start if live is None else min(live, start)
        return found, live

    def _across_gaps(self, data: bytes, start: int) -> tuple[int, int | None, bool]:
        """Follow the prefix at ``start`` over gaps: (end, pattern) of the longest whole
        pattern it completes after at least one gap, and whether it is still possible when
        ``data`` ends."""
        collected, pos = b"", start
        best: tuple[int, int | None] = (0, None)
        for _gap in range(MAX_GAPS):
            size = self._live_length(collected, data, pos)
            for length in (size + 1, size):
                index = self._index.get(collected + data[pos:pos + length])
                if collected and length and index is not None and pos + length <= len(data):
                    best = (pos + length, index)
                    break
            if pos + size >= len(data):
                return best[0], best[1], best[1] is None
            gap = _GAP.match(data, pos + size)
            if gap is None:
                partial = _PARTIAL_GAP.fullmatch(data, pos + size)
                return best[0], best[1], best[1] is None and partial is not None
            collected += data[pos:pos + size]
            pos = gap.end()
        return best[0], best[1], False

    def _live_length(self, prefix: bytes, data: bytes, pos: int) -> int:
        """The most bytes of ``data`` from ``pos`` that ``prefix`` + they keep a proper
        prefix of some pattern (liveness is prefix-closed: a binary search)."""
        low, high = 0, min(self.longest - 1 - len(prefix), len(data) - pos)
        while low < high:
            middle = (low + high + 1) // 2
            if self._is_live(prefix + data[pos:pos + middle]):
                low = middle
            else:
                high = middle - 1
        return max(low, 0)

    def live_start(self, data: bytes) -> int:
        """Where the longest tail of ``data`` that could still grow into a match begins
        (``len(data)`` when no tail can)."""
        size = len(data)
        if self._starts is None or not size:
            return size
        low = max(0, size - self.longest + 1)
        window = data[low:]
        for start in sorted({low + start for start in self._starts(window)}):
            if self._is_live(data[start:]):
                return start
        for start in range(max(low, size - _PREFIX + 1), size):
            if data[start:] in self._short:
                return start
        return size

    def live_spans(self, data: bytes) -> list[tuple[int, int]]:
        """(start, end) of each longest piece of ``data`` that is a proper prefix of some
        pattern and stops being one at ``end`` (a value interrupted there, perhaps)."""
        if self._starts is None:
            return []
        spans = []
        for start in sorted(set(self._starts(data))):
            low, high = 0, min(self.longest - 1, len(data) - start)
            while low < high:  # the longest live length: liveness is prefix-closed
                middle = (low + high + 1) // 2
                if self._is_live(data[start:start + middle]):
                    low = middle
                else:
                    high = middle - 1
            spans.append((start, start + low))
        return spans

    def _is_live(self, tail: bytes) -> bool:
        """Whether ``tail`` is a proper prefix of some pattern."""
        index = bisect.bisect_left(self._sorted, tail)
        for candidate in self._sorted[index:index + 2]:
            if candidate.startswith(tail) and len(candidate) > len(tail):
                return True
        return False


def _prefix_starts(engine: Engine, prefixes: Sequence[bytes]) -> Callable[[bytes], Iterable[int]]:
    """Where a pattern's first ``_PREFIX`` bytes occur: Hyperscan's own database finds
    them; other engines get one of their own for the prefixes."""
    if isinstance(engine, HyperscanEngine):
        return engine.starts
    finder = make_engine(prefixes, _engine_name(engine))
    return lambda data: [start for start, _end, _index in finder.scan(data)]


def _engine_name(engine: Engine) -> str:
    for name, kind in _ENGINE_CLASSES.items():
        if type(engine) is kind:
            return name
    return type(engine).__name__


# Streaming ---------------------------------------------------------------------------


class _Span:
    """Overlapping matches merged into one masked span; named after the longest match."""

    __slots__ = ("best", "end")

    def __init__(self, end: int, best: tuple[int, int, int]) -> None:
        self.end = end  # absolute offset
        self.best = best  # (length, -start, -pattern index): the greatest wins

    def add(self, start: int, end: int, index: int) -> None:
        self.end = max(self.end, end)
        self.best = max(self.best, (end - start, -start, -index))


# A release (the stream went quiet) lets out at most this many bytes of anything that may
# still become a match: SPEC §5 allows the first 4 characters of a value before its mask.
RELEASE = 4

_FEED, _RELEASE, _CLOSE = range(3)

# The largest read searched for a value interrupted by the other output (``split_point``):
# such reads are the few bytes of a command writing both in turn, not bulk output.
SPLIT_SEARCH = 1 << 16


class Masker:
    """Filters one stream: ``feed`` bytes in, get masked bytes out; ``release`` after a
    silence; ``close`` at end of stream. Not thread-safe."""

    def __init__(self, masks: MaskSet) -> None:
        self._masks = masks
        self._tail = b""  # held bytes: they may begin a match
        self._base = 0  # absolute offset of _tail[0]
        self._done = 0  # absolute offset up to which output is decided
        self._open: _Span | None = None  # a masked span that a later match may extend

    @property
    def buffered(self) -> int:
        """Bytes kept in memory: never more than the longest variant."""
        return len(self._tail)

    @property
    def pending(self) -> bool:
        """Whether bytes are held back undecided (what ``close`` would emit)."""
        return self._open is not None or self._base + len(self._tail) > self._done

    @property
    def following(self) -> bool:
        """Whether bytes that may begin a value are still matched against what comes: held,
        or let out by ``release`` (a value whose first bytes showed is still masked)."""
        return bool(self._tail) or self._open is not None

    @property
    def releasable(self) -> bool:
        """Whether ``release`` would let anything out now."""
        if self._open is not None:
            return True
        return self._done < self._base + _release_end(self._tail, 0)

    def feed(self, data: bytes) -> bytes:
        if not self._masks.patterns:
            return data
        return b"".join(self._advance(data, _FEED))

    def feed_parts(self, data: bytes) -> list[Piece]:
        """``feed``, as pieces to write in order (os.writev): the bytes between labels are
        views of ``data``, not copies of it."""
        if not self._masks.patterns:
            return [data]
        return self._advance(data, _FEED)

    def release(self) -> bytes:
        """The stream went quiet: let out a finished match (as its label) and at most the
        first ``RELEASE`` bytes of what may still become one, never more of it however
        often this is called. The held bytes stay in the matcher, so a value whose first
        bytes were let out is masked from there on when the rest comes."""
        if not self._masks.patterns:
            return b""
        return b"".join(self._advance(b"", _RELEASE))

    def close(self) -> bytes:
        """End of stream: emit everything that is left."""
        if not self._masks.patterns:
            return b""
        return b"".join(self._advance(b"", _CLOSE))

    def continuation(self, data: bytes) -> tuple[int, int, int] | None:
        """A value begun by the held bytes and continued by ``data`` — the next bytes of the
        command's other output (stdout and stderr each have a masker): where it begins in
        the held bytes, how many bytes of ``data`` it takes, and its pattern; or None."""
        tail = self._tail
        if not tail or not data:
            return None
        window = tail + data[: self._masks.longest]
        for start, end, index in self._masks.occurrences(window):
            if start < len(tail) < end:
                return start, end - len(tail), index
        return None

    def split_point(self, data: bytes, other: bytes) -> int | None:
        """Where in ``data`` a value may have been interrupted by ``other``, the command's
        other output read in the same round (the order of their writes is lost then): the
        end of a prefix that stops being live there and that ``other`` continues into a
        whole value. ``feed`` up to it, then ``other``, then the rest. None if nowhere."""
        if not self._masks.patterns or not other or len(data) > SPLIT_SEARCH:
            return None
        buf = self._tail + data
        for start, end in self._masks.live_spans(buf):
            if end < len(self._tail) or end >= len(buf):
                continue  # before this read, or live to its end (``continuation`` sees it)
            window = buf[start:end] + other[: self._masks.longest]
            if any(s == 0 and e > end - start for s, e, _ in self._masks.occurrences(window)):
                return end - len(self._tail)
        return None

    def end_held(self, start: int, index: int) -> bytes:
        """The held bytes from ``start`` on began a value that went on in the other output
        (``continuation``): they become its label, and matching starts afresh after them."""
        out = [] if self._open is None else [self._label(self._open)]
        done = self._done - self._base
        if start > done:
            out.append(self._tail[done:start])
        out.append(self._masks.label(index))
        self._base = self._done = self._base + len(self._tail)
        self._tail, self._open = b"", None
        return b"".join(out)

    def feed_continuing(self, data: bytes, taken: int, index: int) -> bytes:
        """``feed``, the first ``taken`` bytes of ``data`` being the rest of a value that
        began in the other output (masked as pattern ``index``)."""
        out = self._advance(b"", _CLOSE)  # what this stream held is followed by no value
        self._open = _Span(self._base + taken, (taken, -self._base, -index))
        self._done = self._base + taken
        return b"".join(out + self._advance(data, _FEED))

    def _advance(self, data: bytes, mode: int) -> list[Piece]:
        buf = self._tail + data if self._tail else data
        base = self._base
        found = self._masks.occurrences(buf)
        live = self._masks.live_start(buf) if mode != _CLOSE else len(buf)
        orphans = self._masks.orphans(buf, found)
        if orphans:  # a pattern began where none is whole: a gap inside it, perhaps
            extra, held = self._masks.gapped(buf, orphans)
            extra = [(start, end, index) for start, end, index in extra  # not across whole
                     if not any(s < end and start < e for s, e, _i in found)]  # ones
            if extra:
                found = sorted(found + extra, key=lambda o: (o[0], -o[1]))
            if held is not None and mode != _CLOSE:
                live = min(live, held)
        if mode == _FEED:
            cut = live  # nothing from here on is decided yet
        elif mode == _CLOSE:
            cut = len(buf)
        else:
            cut = max(self._done - base, _release_end(buf, live))
        out, pos, span = self._decide(buf, base, cut, mode != _FEED, found)
        self._open = span
        self._tail = buf[live:]
        self._base = base + live
        self._done = base + pos
        return out

    def _decide(self, buf: bytes, base: int, cut: int, label_open: bool,
                found: list[Occurrence]) -> tuple[list[Piece], int, _Span | None]:
        """Emit ``buf`` up to ``cut`` with its matches masked; return the output, the
        relative offset decided so far, and a span still open past ``cut`` (given its
        label now when ``label_open``: a longer match then gets a label of its own)."""
        out: list[Piece] = []
        view = memoryview(buf)
        pos = self._done - base
        span = self._open
        for start, end, index in found:
            if span is not None and base + start < span.end:
                span.add(base + start, base + end, index)
                pos = max(pos, end)
                continue
            if end <= pos:
                continue  # inside bytes already let out or masked
            if span is not None:
                if span.end - base > cut:
                    break
                out.append(self._label(span))
                span = None
            if start >= cut:
                break
            if start > pos:
                out.append(view[pos:start])
            span = _Span(base + end, (end - start, -(base + start), -index))
            pos = end
        if span is not None and (label_open or span.end - base <= cut):
            out.append(self._label(span))
            span = None
        if span is None and cut > pos:
            out.append(view[pos:cut] if pos or cut < len(buf) else buf)
            pos = cut
        return out, pos, span

    def _label(self, span: _Span) -> bytes:
        return self._masks.label(-span.best[2])


def _release_end(buf: bytes, live: int) -> int:
    """Where a release stops: ``RELEASE`` bytes into the live prefix at ``live``, moved
    back so that it does not cut a UTF-8 character in two."""
    end = min(len(buf), live + RELEASE)
    for back in range(min(3, end - live)):
        byte = buf[end - 1 - back]
        if byte < 0x80:
            return end
        if byte >= 0xC0:  # the lead byte of a character of 2, 3 or 4 bytes
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return end if back + 1 >= size else end - 1 - back
    return end
