"""The contract tests themselves (see ``keyrun.testing``)."""

from __future__ import annotations

import abc

import pytest

from keyrun.errors import SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Item, Problem, Request, Source

CANARY = "kr-canary-7f3a9c1e5b2d4068"


class Harness(abc.ABC):
    """Puts values into a real backend and builds a source that reads them."""

    #: the largest value the backend stores (bytes of UTF-8)
    max_value_size: int = 64 * 1024
    #: whether the backend can hold an empty string
    supports_empty: bool = True
    #: whether a value may hold ``${NAME}`` as written (a .env file cannot: python-dotenv
    #: expands it inside any quotes, and keyrun reads what python-dotenv reads)
    holds_dollar_brace: bool = True

    @abc.abstractmethod
    def put(self, name: str, value: str) -> None:
        """Store ``value`` under the backend name ``name``."""

    @abc.abstractmethod
    def source(self) -> Source:
        """A configured source that reads what ``put`` stored."""

    def broken_source(self) -> Source | None:
        """A source whose backend fails as a whole (unreachable, denied); None to skip."""
        return None


def _fetch(source: Source, *names: str) -> dict[str, Item | Problem]:
    requests = [Request(key=name, name=source.backend_name(name)) for name in names]
    result = dict(source.fetch(requests, Deadline(30)))
    for name in names:
        result.setdefault(name, Problem.missing())
    return result


def _value(outcome: Item | Problem) -> str:
    assert isinstance(outcome, Item), f"expected a value, got {outcome!r}"
    assert isinstance(outcome.value, Secret)
    return outcome.value.reveal()


class SourceContract:
    """Contract tests every keyrun source passes."""

    @pytest.fixture
    def harness(self) -> Harness:
        raise NotImplementedError("implement the harness fixture")

    def test_present(self, harness: Harness) -> None:
        harness.put("OPENAI_API_KEY", "sk-contract-present-0001")
        assert _value(_fetch(harness.source(), "OPENAI_API_KEY")["OPENAI_API_KEY"]) == (
            "sk-contract-present-0001"
        )

    def test_missing_is_a_problem_never_empty(self, harness: Harness) -> None:
        harness.put("PRESENT_KEY", "present-value-01")
        outcome = _fetch(harness.source(), "ABSENT_KEY")["ABSENT_KEY"]
        assert isinstance(outcome, Problem)
        assert outcome.kind == "missing"

    def test_all_at_once(self, harness: Harness) -> None:
        names = [f"KEY_{i:02d}" for i in range(30)]
        for i, name in enumerate(names):
            harness.put(name, f"value-{i:02d}-{'x' * i}")
        result = _fetch(harness.source(), *names, "NOT_THERE_1", "NOT_THERE_2")
        for i, name in enumerate(names):
            assert _value(result[name]) == f"value-{i:02d}-{'x' * i}"
        for name in ("NOT_THERE_1", "NOT_THERE_2"):
            outcome = result[name]
            assert isinstance(outcome, Problem)
            assert outcome.kind == "missing"

    def test_unicode(self, harness: Harness) -> None:
        value = "ключ-🔑-値-ñ-\u00e9\u0301"
        harness.put("UNICODE_KEY", value)
        assert _value(_fetch(harness.source(), "UNICODE_KEY")["UNICODE_KEY"]) == value

    def test_multiline(self, harness: Harness) -> None:
        value = (
            "-----BEGIN KEY-----\nMIIB\"quoted\"\n  'single' $HOME ${HOME} \\n\n-----END KEY-----"
        )
        if not harness.holds_dollar_brace:
            value = value.replace("${HOME}", "{HOME}")
        harness.put("MULTILINE_KEY", value)
        assert _value(_fetch(harness.source(), "MULTILINE_KEY")["MULTILINE_KEY"]) == value

    def test_large(self, harness: Harness) -> None:
        size = min(harness.max_value_size, 60 * 1024)
        value = ("abcdefghij" * (size // 10 + 1))[:size]
        harness.put("LARGE_KEY", value)
        assert _value(_fetch(harness.source(), "LARGE_KEY")["LARGE_KEY"]) == value

    def test_empty_string_is_a_value(self, harness: Harness) -> None:
        if not harness.supports_empty:
            pytest.skip("this backend cannot hold an empty string")
        harness.put("EMPTY_KEY", "")
        assert _value(_fetch(harness.source(), "EMPTY_KEY")["EMPTY_KEY"]) == ""

    def test_item_never_shows_its_value(self, harness: Harness) -> None:
        harness.put("CANARY_KEY", CANARY)
        outcome = _fetch(harness.source(), "CANARY_KEY")["CANARY_KEY"]
        assert CANARY not in repr(outcome)
        assert CANARY not in str(outcome)
        assert CANARY not in f"{outcome}"

    def test_locate_names_the_item(self, harness: Harness) -> None:
        source = harness.source()
        where = source.locate(Request("SOME_KEY", source.backend_name("SOME_KEY")))
        assert isinstance(where, str)
        assert where

    def test_errors_are_wrapped(self, harness: Harness) -> None:
        broken = harness.broken_source()
        if broken is None:
            pytest.skip("the harness has no broken source")
        failure: SourceError | None = None
        try:
            outcome = _fetch(broken, "OPENAI_API_KEY")["OPENAI_API_KEY"]
        except SourceError as exc:
            failure = exc
        if failure is not None:
            assert failure.source == broken.name
            assert CANARY not in str(failure)
        else:
            assert isinstance(outcome, Problem)
            assert outcome.kind in ("denied", "error")
            # the core names the source and the key beside the message, once
            assert not outcome.message.startswith((f"{broken.name}: ", "OPENAI_API_KEY: "))
            assert CANARY not in outcome.message

    def test_write_round_trip(self, harness: Harness) -> None:
        source = harness.source()
        if not source.writable:
            pytest.skip("read-only source")
        harness.put("OTHER_KEY", "other-value-0001")
        request = Request("WRITTEN_KEY", source.backend_name("WRITTEN_KEY"))
        where = source.write(request, Secret("first-value-0001"), Deadline(30))
        assert "first-value-0001" not in where
        source.write(request, Secret("second-value-002"), Deadline(30))
        result = _fetch(harness.source(), "WRITTEN_KEY", "OTHER_KEY")
        assert _value(result["WRITTEN_KEY"]) == "second-value-002"
        assert _value(result["OTHER_KEY"]) == "other-value-0001"
