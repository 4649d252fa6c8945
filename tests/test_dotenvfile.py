"""Strict .env parsing (SPEC §5) and the writer's round trip."""

from __future__ import annotations

import io
import os
from pathlib import Path
from unittest import mock

import dotenv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyrun.dotenvfile import format_assignment, parse_dotenv, replace_assignment, resolve_values
from keyrun.errors import ConfigError


def values(text: str, environ: dict[str, str] | None = None) -> dict[str, str | None]:
    return resolve_values(parse_dotenv(text, "/p/.env"), environ or {}, "/p/.env")


def test_the_usual_forms() -> None:
    text = ("# comment\nA=1\nexport B='two words'\nC=\"line\\nbreak\"\nD=plain # trailing\n"
            "E=\n\n  F = spaced  \n")
    assert values(text) == {"A": "1", "B": "two words", "C": "line\nbreak", "D": "plain",
                            "E": "", "F": "spaced"}


def test_expansion_as_python_dotenv_does() -> None:
    text = "HOST=db\nURL=postgres://${HOST}/x\nDQ=\"${HOST}:${PORT:-5432}\"\nSQ='$HOST'\n"
    assert values(text, {"PORT": "6000"}) == {
        "HOST": "db", "URL": "postgres://db/x", "DQ": "db:6000", "SQ": "$HOST"}
    assert values(text, {"PORT": "6000"}) == reading_of_python_dotenv(text, {"PORT": "6000"})


def reading_of_python_dotenv(text: str, environ: dict[str, str]) -> dict[str, str | None]:
    with mock.patch.dict(os.environ, environ, clear=True):
        return dict(dotenv.dotenv_values(stream=io.StringIO(text)))


SECRET = "Zq8-v41ue"  # in every refused line below: no message may repeat it


@pytest.mark.parametrize(("line", "says"), [
    ("KEY=`Zq8-v41ue`", "KEY's value starts with a backtick"),
    ("KEY=`Zq8-v41ue\nMORE`", "KEY's value starts with a backtick"),
    ("KEY=${UNSET-Zq8-v41ue}", "KEY's value uses a shell form"),
    ("KEY=${UNSET:=Zq8-v41ue}", "KEY's value uses a shell form"),
    ("KEY=${UNSET:?Zq8-v41ue}", "KEY's value uses a shell form"),
    ("KEY=\"${OTHER:+Zq8-v41ue}\"", "KEY's value uses a shell form"),
    ("KEY=${UNSET:-${OTHER:-Zq8-v41ue}}", "KEY's value has a ${…} nested in a default"),
    ("KEY=${KEY:-Zq8-v41ue}", "KEY's value refers to itself through a default"),
    ("KEY='Zq8-v41ue${OTHER}'", "KEY's value holds ${…} inside single quotes"),
    ("KEY=\"Zq8-v41ue${d0r!x}\"", "KEY's value holds a ${ that is not ${NAME}"),
    ("KEY=Zq8-v41ue${open", "KEY's value holds a ${ that is not ${NAME}"),
    ("Zq8-v41ue", "this line has no '='"),
])
def test_forms_other_tools_read_differently_are_refused(line: str, says: str) -> None:
    text = f"OTHER=1\n{line}\nAFTER=2\n"
    with pytest.raises(ConfigError) as caught:
        values(text)
    assert caught.value.message.startswith(f"/p/.env:2: {says}")
    assert SECRET not in caught.value.message + (caught.value.hint or "")
    assert "v41ue" not in caught.value.message + (caught.value.hint or "")


def test_a_backtick_value_over_lines_is_refused_at_its_first_line() -> None:
    text = "A=1\nPEM=`-----BEGIN-----\nMIIBIjAN\n-----END-----`\nB=2\n"
    with pytest.raises(ConfigError) as caught:
        values(text)
    assert caught.value.line == 2


def test_example_files_may_hold_bare_names() -> None:
    entries = parse_dotenv("OPENAI_API_KEY\nDB_URL=`placeholder`\n", ".env.example",
                           names_only=True)
    assert [e.key for e in entries] == ["OPENAI_API_KEY", "DB_URL"]


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


@pytest.mark.parametrize(("text", "expected"), [
    ('A="x\r\ny"\r\nB=1\r\n', {"A": "x\ny", "B": "1"}),  # a file saved with CR LF
    ("A='x\r\ny'\r\n", {"A": "x\ny"}),
    ('A="x\ry"\nB=2\n', {"A": "x\ny", "B": "2"}),  # a lone CR inside quotes
    ('A="x\\r"\r\n', {"A": "x\r"}),  # an escaped \r stays a CR
])
def test_line_ends_read_as_python_dotenv_reads_the_file(tmp_path: Path, text: str,
                                                         expected: dict[str, str]) -> None:
    path = tmp_path / ".env"
    path.write_bytes(text.encode())
    assert values(text) == expected
    assert dict(dotenv.dotenv_values(path)) == expected  # it opens the file in text mode


def test_a_crlf_file_keeps_its_line_ends_when_a_key_is_replaced() -> None:
    text = 'A=1\r\nB="x\r\ny"\r\nC=3\r\n'
    entries = parse_dotenv(text, ".env")
    assert [(e.key, e.line) for e in entries] == [("A", 1), ("B", 2), ("C", 4)]
    assert replace_assignment(text, entries, "B", "new") == "A=1\r\nB='new'\r\nC=3\r\n"


def test_one_reading_over_every_python_dotenv_the_pyproject_allows() -> None:
    # Each of these is read another way before python-dotenv 1.2.4, the floor: a value that
    # is only a comment, a byte-order mark, a value keyrun set wrote ending in a backslash.
    assert values("\ufeffA=1\nB= # note\nC=\t# note\n") == {"A": "1", "B": "", "C": ""}
    path = "C:\\dir\\"
    written = f"{format_assignment('K', path)}\n{format_assignment('L', 'it')}\n"
    assert values(written) == {"K": path, "L": "it"}


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
               max_size=200) | st.sampled_from(["a\nB=c", "x\r\ny", "$HOME\nz", "\\'\"\\n",
                                                "`tick`", "a$ {b}"]))
def test_written_values_read_back_exactly(value: str) -> None:
    if "${" in value:
        with pytest.raises(ConfigError, match="python-dotenv expands inside any quotes"):
            format_assignment("KEY", value)
        return
    text = f"BEFORE=1\n{format_assignment('KEY', value)}\nAFTER=2\n"
    expected = {"BEFORE": "1", "KEY": value, "AFTER": "2"}
    assert values(text) == expected
    assert reading_of_python_dotenv(text, {}) == expected


def test_a_value_holding_dollar_brace_is_not_written() -> None:
    with pytest.raises(ConfigError) as caught:
        format_assignment("KEY", "Zq8-v41ue${HOME}")
    assert "KEY" in caught.value.message
    assert "v41ue" not in caught.value.message + (caught.value.hint or "")
