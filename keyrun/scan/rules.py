"""The credential rules of ``keyrun scan``: data in ``rules.toml`` (shipped in the package),
plus a project's own from keyrun.toml's ``[scan]`` table. A rule's regex is compiled the
first time a text needs the rule (a commit of ordinary code needs a few of the hundreds).

A rule is a regex over the raw bytes of a text. It names its secret ``(?P<secret>…)`` (else
the whole match is the secret); ``(?P<prefix>…)`` is the documented, non-secret start of the
key, which a preview may show and the gates skip; ``(?P<label>…)`` replaces the whole preview
(a PEM header). A rule runs only on a text holding one of its ``keywords`` (in any case), so
the regexes of a hundred formats cost little on a file that mentions none of them.

A ``keyword_first`` rule's match begins where one of its keywords does, and is tried only
there (its pattern may then start without a literal, as ``(?i)`` and look-behind patterns do);
in a text over 64 KB the other keyword rules run only near their keywords.

A ``fallback`` rule (a secret-named variable with a random value) stays silent where a
provider's rule decides: a value with a provider's documented prefix, or a variable named after
a provider (``CLOUDFLARE_API_KEY``).

Gates, in order: the byte before the match is not a token character (``boundary``); the
secret is no placeholder (documented examples, stand-in words, runs of one character; the
rule's ``allow`` patterns; for ``generic`` rules also words like ``your`` or ``test``); its
body has both cases (``mixed_case``) and at least ``entropy`` bits per character; the rule's
``check`` (a structural test in ``keyrun.scan.checks``) accepts it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keyrun.config import ScanRuleSpec, ScanSpec, parse_rules_file
from keyrun.errors import ConfigError
from keyrun.scan.checks import CHECKS, Check

TOKEN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/"
MIN_ENTROPY = 2.5  # below this nothing is random enough to be a key, whatever the rule says
MIN_PREFIX = 4  # a documented prefix this long is the provider's, not a generic rule's, to judge


@dataclass(frozen=True)
class Rule:
    """One credential format (see the module's docstring for the gates); its ``pattern`` and
    ``allow`` patterns are compiled when first used."""

    id: str
    description: str
    regex: bytes
    keywords: tuple[bytes, ...] = ()
    entropy: float = 0.0
    allow_regexes: tuple[bytes, ...] = ()
    mixed_case: bool = False
    generic: bool = False
    fallback: bool = False
    key_file: bool = False
    boundary: bool = True
    keyword_first: bool = False
    check: Check | None = None
    near: str | None = None
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()
    where: str = ""

    @functools.cached_property
    def pattern(self) -> re.Pattern[bytes]:
        return re.compile(self.regex)

    @functools.cached_property
    def allow(self) -> tuple[re.Pattern[bytes], ...]:
        return tuple(map(re.compile, self.allow_regexes))

    @property
    def has_prefix(self) -> bool:
        """Whether the pattern names a documented prefix (``(?P<prefix>…)``)."""
        return b"(?P<prefix>" in self.regex


@dataclass(frozen=True)
class RuleSet:
    """Rules in the order they run, and the index that finds which ones a text needs."""

    rules: tuple[Rule, ...]
    keywords: tuple[bytes, ...]
    by_keyword: Mapping[bytes, tuple[int, ...]]
    always: tuple[int, ...]
    documented_prefixes: tuple[bytes, ...]
    provider_words: re.Pattern[bytes]
    within: dict[bytes, tuple[bytes, ...]]  # filled as keywords are found
    engines: dict[str, Callable[[bytes], set[int]] | None] = field(default_factory=dict,
                                                                   compare=False)

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> RuleSet:
        ordered = tuple(rules)
        index: dict[bytes, list[int]] = {}
        for position, rule in enumerate(ordered):
            for keyword in rule.keywords:
                index.setdefault(keyword, []).append(position)
        specific = [rule for rule in ordered if not rule.fallback]
        prefixes = {keyword for rule in specific if rule.has_prefix
                    for keyword in rule.keywords if len(keyword) >= MIN_PREFIX}
        # A provider's name: a keyword that begins its rule's id (cloudflare-api-token).
        words = {keyword for rule in specific for keyword in rule.keywords
                 if len(keyword) >= MIN_PREFIX and keyword.isalpha()
                 and rule.id.replace("-", "").startswith(keyword.decode())}
        return cls(ordered, tuple(index), {k: tuple(v) for k, v in index.items()},
                   tuple(i for i, rule in enumerate(ordered) if not rule.keywords),
                   tuple(sorted(prefixes)),
                   re.compile(b"|".join(map(re.escape, sorted(words))) or b"(?!)"), {})

    def titles(self) -> dict[str, str]:
        return {rule.id: rule.description for rule in self.rules} | {
            "profile-value": "A value of this profile's keys"}

    def to_run(self, lower: bytes) -> list[Rule]:
        """The rules a text needs: those without keywords, and those with one in it."""
        if len(lower) > SMALL_TEXT and (find := self._fast_engine()) is not None:
            present = {self.keywords[index] for index in find(lower)}
        elif len(lower) <= FINDER_LIMIT:
            present = {w for found in set(self.finder.findall(lower)) for w in self._in(found)}
        else:  # bytes.find is faster than the finder on a long text
            present = {keyword for keyword in self.keywords if keyword in lower}
        chosen = set(self.always)
        for keyword in present:
            chosen.update(self.by_keyword[keyword])
        return [self.rules[i] for i in sorted(chosen)]

    @functools.cached_property
    def finder(self) -> re.Pattern[bytes]:
        return keyword_finder(self.keywords)

    def _in(self, found: bytes) -> tuple[bytes, ...]:
        """The keywords inside a keyword the finder found (itself included)."""
        inside = self.within.get(found)
        if inside is None:
            inside = self.within[found] = tuple(k for k in self.keywords if k in found)
        return inside

    def _fast_engine(self) -> Callable[[bytes], set[int]] | None:
        """A compiled Aho-Corasick automaton for the keywords (``ahocorasick-rs``, from the
        ``mask`` extra) when it is installed: built on the first text over ``SMALL_TEXT``."""
        if "fast" not in self.engines:
            self.engines["fast"] = _automaton(self.keywords)
        return self.engines["fast"]

    def judged_elsewhere(self, secret: bytes, name: bytes) -> bool:
        """Whether a provider's rule, not a fallback rule, decides whether ``secret`` (held
        by the variable ``name``) is a key: it starts with a provider's documented prefix, or
        the name says which provider it is for (``CLOUDFLARE_API_KEY``)."""
        return (secret.lower().startswith(self.documented_prefixes)
                or self.provider_words.search(name.lower()) is not None)


FINDER_LIMIT = 64 * 1024
SMALL_TEXT = 2048  # below this the finder costs less than a call into the automaton


def _automaton(keywords: Sequence[bytes]) -> Callable[[bytes], set[int]] | None:
    try:
        import ahocorasick_rs
    except ImportError:
        return None
    automaton = ahocorasick_rs.BytesAhoCorasick(
        keywords, implementation=ahocorasick_rs.Implementation.DFA)

    def find(data: bytes) -> set[int]:
        return {index for index, _, _ in
                automaton.find_matches_as_indexes(data, overlapping=True)}

    return find


def keyword_finder(keywords: Iterable[bytes]) -> re.Pattern[bytes]:
    """One pattern that finds, at every offset, the longest keyword starting there: the
    keywords as a trie, so each offset costs a character test rather than a try per keyword
    (the keywords a found one contains are added by ``RuleSet.within``)."""
    trie: dict[int, dict] = {}  # type: ignore[type-arg]
    for keyword in keywords:
        node = trie
        for byte in keyword:
            node = node.setdefault(byte, {})
        node[-1] = {}

    def branch(node: dict) -> bytes:  # type: ignore[type-arg]
        alternatives = [re.escape(bytes([byte])) + branch(child)
                        for byte, child in sorted(node.items()) if byte >= 0]
        if not alternatives:
            return b""
        body = b"(?:" + b"|".join(alternatives) + b")" if len(alternatives) > 1 else (
            alternatives[0])
        return b"(?:" + body + b")?" if -1 in node else body

    return re.compile(b"(?=(" + (branch(trie) or b"(?!)") + b"))")


def make_rule(spec: ScanRuleSpec) -> Rule:
    """A rule as written (its regexes compiled when first used); an unknown ``check`` names
    the rule's file and line."""
    check = None
    if spec.check is not None:
        check = CHECKS.get(spec.check)
        if check is None:
            raise ConfigError(f"{spec.where}: unknown check {spec.check!r}",
                              f"checks: {', '.join(sorted(CHECKS))}")
    return Rule(
        id=spec.id, description=spec.description, regex=spec.regex.encode("utf-8"),
        keywords=tuple(dict.fromkeys(k.lower().encode() for k in spec.keywords)),
        entropy=spec.entropy, allow_regexes=tuple(a.encode("utf-8") for a in spec.allow),
        mixed_case=spec.mixed_case, generic=spec.generic, fallback=spec.fallback,
        key_file=spec.key_file, keyword_first=spec.keyword_first,
        boundary=spec.boundary, check=check, near=spec.near, examples=spec.examples,
        counterexamples=spec.counterexamples, where=spec.where)


RULES_FILE = "rules.toml"


# A rule's examples and counterexamples: multi-line arrays, each closed by a line "]".
_EXAMPLES = re.compile(r"(?m)^(?:counter)?examples = \[\n(?:.*\n)*?\]\n")


@functools.cache
def builtin_rules(*, examples: bool = False) -> tuple[Rule, ...]:
    """The rules shipped in the package, read once per process. Their regexes are checked by
    keyrun's tests, not at every start; and unless ``examples`` is asked for, the examples
    arrays (test data, which take tomllib half its time) are blanked before parsing, their
    lines kept so that messages name the right ones."""
    path = Path(__file__).with_name(RULES_FILE)
    text = path.read_text(encoding="utf-8")
    if not examples:
        text = _EXAMPLES.sub(lambda found: "\n" * found.group().count("\n"), text)
    return tuple(make_rule(spec) for spec in parse_rules_file(path, text,
                                                                 check_regexes=False))


@functools.lru_cache(maxsize=8)
def ruleset(spec: ScanSpec | None = None) -> RuleSet:
    """The built-in rules less those ``[scan] disable`` names, plus the project's own (a
    project rule with a built-in's id replaces it)."""
    builtin = builtin_rules()
    if spec is None or not (spec.rules or spec.disable):
        return _builtin_set()
    known = {rule.id for rule in builtin} | {rule.id for rule in spec.rules}
    for rule_id in spec.disable:
        if rule_id not in known:
            import difflib

            close = difflib.get_close_matches(rule_id, known, n=3)
            raise ConfigError(f"{spec.where} disable: no rule has the id {rule_id!r}",
                              f"did you mean {' or '.join(close)}?" if close else
                              "a finding's rule id is the word after its path:line")
    own = [make_rule(rule) for rule in spec.rules]
    replaced = {rule.id for rule in own} | set(spec.disable)
    rules = [rule for rule in builtin if rule.id not in replaced]
    rules += [rule for rule in own if rule.id not in spec.disable]
    _check_near(rules)
    return RuleSet.of(rules)


@functools.cache
def _builtin_set() -> RuleSet:
    rules = builtin_rules()
    _check_near(rules)
    return RuleSet.of(rules)


def _check_near(rules: Iterable[Rule]) -> None:
    rules = list(rules)
    order = {rule.id: i for i, rule in enumerate(rules)}
    for i, rule in enumerate(rules):
        if rule.near is not None and order.get(rule.near, i) >= i:
            raise ConfigError(f"{rule.where}: near = {rule.near!r} must name a rule defined "
                              "before this one", "move the rule after the one it is near")


# -- placeholders and entropy ----------------------------------------------------------------

# Keys published in providers' own documentation as examples (AWS's IAM guide, Stripe's API
# reference): reported by every scanner if not excused here.
DOCUMENTED_EXAMPLES = frozenset({
    b"AKIAIOSFODNN7EXAMPLE",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    b"sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    b"sk_test_BQokikJOvBiI2HlWgH4olfQ2",
})
_RUN_LENGTH = 6  # ascending letters or digits (abcdef, 123456) are typed, not random
_ASCENDING = b"|".join(
    alphabet[i:i + _RUN_LENGTH]
    for alphabet in (b"abcdefghijklmnopqrstuvwxyz", b"0123456789")
    for i in range(len(alphabet) - _RUN_LENGTH + 1))
# Searched in the lower-cased value.
# Words that mark a stand-in, and the body of Stripe's documented example key (its docs show
# it as sk_test_…, tutorials change the mode).
_STAND_INS = (rb"example|placeholder|change_?me|redacted|replace|dummy|sample|insert|[x*#]{5}|"
              rb"qwerty|4ec39hqlyjwdarjtt1zdp7dc|" + _ASCENDING)
_PLACEHOLDER = re.compile(_STAND_INS + rb"|(.)\1{7}")
_KEY_FILE_PLACEHOLDER = re.compile(_STAND_INS + rb"|\A(.)\1*\Z")
_GENERIC_PLACEHOLDER = re.compile(rb"your|fake|test|here|token|secret|xxx")


def is_placeholder(secret: bytes, loose: bool = False, key_file: bool = False) -> bool:
    """A documented example or a stand-in (``xxxx``, ``your-key``, ``EXAMPLE``), not a key.
    ``loose`` also counts words that only a placeholder holds where no format is known
    (``your``, ``test``); ``key_file``: only a value made wholly of one character is a run
    (a key file's fixed headers hold long runs of ``A``)."""
    lower = secret.lower()
    stand_in = _KEY_FILE_PLACEHOLDER if key_file else _PLACEHOLDER
    if secret in DOCUMENTED_EXAMPLES or stand_in.search(lower):
        return True
    return loose and _GENERIC_PLACEHOLDER.search(lower) is not None


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in map(data.count, set(data)))


def passes_gates(rule: Rule, secret: bytes, body: bytes) -> bool:
    """Whether ``secret`` (``body``: the part after its documented prefix) looks like a real
    key for ``rule``."""
    if secret in DOCUMENTED_EXAMPLES:
        return False
    if is_placeholder(body, rule.generic, rule.key_file):
        return False
    if any(allow.search(secret) for allow in rule.allow):
        return False
    if rule.mixed_case and (body == body.lower() or body == body.upper()):
        return False
    return entropy(body) >= max(rule.entropy, MIN_ENTROPY)
