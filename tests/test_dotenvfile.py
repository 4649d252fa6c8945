"""Strict .env parsing (SPEC §5) and the writer's round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyrun.dotenvfile import format_assignment, parse_dotenv, replace_assignment, resolve_values
from keyrun.errors import ConfigError


def values(text: str, environ: dict[str, str] | None = None) -> dict[str, str | None]:
    return resolve_values(parse_dotenv(text, ".env"), environ or {})


def test_the_usual_forms() -> None:
    text = ("# comment\nA=1\nexport B='two words'\nC=\"line\\nbreak\"\nD=plain # trailing\n"
            "E=\n\n  F = spaced  \n")
    assert values(text) == {"A": "1", "B": "two words", "C": "line\nbreak", "D": "plain",
                            "E": "", "F": "spaced"}


def test_expansion_except_in_single_quotes() -> None:
    text = "HOST=db\nURL=postgres://${HOST}/x\nRAW='${HOST}'\nDQ=\"${HOST}:${PORT:-5432}\"\n"
    assert values(text, {"PORT": "6000"}) == {
        "HOST": "db", "URL": "postgres://db/x", "RAW": "${HOST}", "DQ": "db:6000"}


def test_unparseable_line_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dotenv("A=1\n\n\nB='unterminated\nC=3\n", "/p/.env")
    assert caught.value.message.startswith("/p/.env:4: this line cannot be parsed")


def test_unterminated_quote_swallowing_keys_is_an_error() -> None:
    text = 'A=1\nB="starts here\nC=3\nD="\n'
    with pytest.raises(ConfigError) as caught:
        parse_dotenv(text, ".env")
    assert ".env:2: the quote opened here is not closed before line 3" in caught.value.message


def test_a_real_multiline_value_is_fine() -> None:
    text = 'KEY="-----BEGIN-----\nMIIB\n-----END-----"\nNEXT=1\n'
    assert values(text) == {"KEY": "-----BEGIN-----\nMIIB\n-----END-----", "NEXT": "1"}


def test_line_numbers_count_blank_lines() -> None:
    entries = parse_dotenv("\n\nA=1\n# c\n\nB=2\n", ".env")
    assert [(e.key, e.line) for e in entries] == [("A", 3), ("B", 6)]


def test_replace_keeps_everything_else() -> None:
    text = "# keep me\nA=1\nexport B=old # comment\nC='x'\n"
    updated = replace_assignment(text, parse_dotenv(text, ".env"), "B", "new")
    assert updated == "# keep me\nA=1\nexport B='new'\nC='x'\n"  # still exported
    appended = replace_assignment(text.rstrip("\n"), parse_dotenv(text, ".env"), "D", "d")
    assert appended == "# keep me\nA=1\nexport B=old # comment\nC='x'\nD='d'\n"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
               max_size=200) | st.sampled_from(["a\nB=c", "x\r\ny", "${HOME}\nz", "\\'\"\\n"]))
def test_written_values_read_back_exactly(value: str) -> None:
    text = f"BEFORE=1\n{format_assignment('KEY', value)}\nAFTER=2\n"
    assert values(text) == {"BEFORE": "1", "KEY": value, "AFTER": "2"}
