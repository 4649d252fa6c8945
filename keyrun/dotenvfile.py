"""Strict ``.env`` parsing on top of python-dotenv's parser.

python-dotenv logs a warning for a line it cannot parse and goes on, expands
``${VAR}`` even inside single quotes, and lets an unterminated quote swallow the lines
after it. keyrun treats each of those as a configuration error or does what the quote
says instead (SPEC §5).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

from keyrun.errors import ConfigError


def _dotenv_module(name: str) -> ModuleType:
    """python-dotenv's ``parser`` or ``variables`` module, which import nothing of their
    package: loaded alone, because the package's ``__init__`` imports ``dotenv.main`` and with
    it logging and tempfile, about 10 ms of every keyrun start."""
    import importlib
    import importlib.util
    import sys

    if "dotenv" not in sys.modules and (package := importlib.util.find_spec("dotenv")):
        for folder in package.submodule_search_locations or ():
            spec = importlib.util.spec_from_file_location(f"dotenv.{name}", f"{folder}/{name}.py")
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module
    return importlib.import_module(f"dotenv.{name}")


if TYPE_CHECKING:
    from dotenv.parser import parse_stream
    from dotenv.variables import Atom, Literal, Variable, parse_variables
else:
    parse_stream = _dotenv_module("parser").parse_stream
    _variables = _dotenv_module("variables")
    Atom, Literal, Variable = _variables.Atom, _variables.Literal, _variables.Variable
    parse_variables = _variables.parse_variables

_VALUE_START = re.compile(r"\s*(?:export\s+)?(?:'[^']+'|[^=#\s]+)\s*=[^\S\r\n]*(.?)")
_NEWLINE = re.compile(r"\r\n|\n|\r")
# NAME=value on a line of its own; not a base64 line ending in "=" padding (PEM keys).
_LOOKS_LIKE_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=(?!=|\s*$)")


class Entry(NamedTuple):
    key: str
    value: str | None  # None for a bare ``NAME`` line
    line: int
    quote: str  # "'", '"' or "" (unquoted)
    start: int  # offsets of the assignment in the text, line break excluded
    end: int


def parse_dotenv(text: str, path: str) -> list[Entry]:
    """Every assignment in file order; raise ConfigError naming the line of any mistake."""
    entries: list[Entry] = []
    offset = 0
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        body = original.lstrip()
        start = offset + len(original) - len(body)
        line = binding.original.line + len(_NEWLINE.findall(original[: len(original) - len(body)]))
        offset += len(original)
        if binding.error:
            raise ConfigError(
                "this line cannot be parsed",
                "write NAME=value, quote values with spaces or '#', close every quote",
                path=path,
                line=line,
            )
        if binding.key is None:
            continue
        quote = _quote_of(binding.original.string)
        if quote and "\n" in body.rstrip("\r\n"):
            _reject_swallowed_lines(body.rstrip("\r\n"), quote, path, line)
        end = start + len(body.rstrip("\r\n"))
        entries.append(Entry(binding.key, binding.value, line, quote, start, end))
    return entries


def _quote_of(original: str) -> str:
    match = _VALUE_START.match(original)
    char = match.group(1) if match else ""
    return char if char in ("'", '"') else ""


def _reject_swallowed_lines(written: str, quote: str, path: str, line: int) -> None:
    for offset, text in enumerate(written.split("\n")[1:], start=1):
        if _LOOKS_LIKE_ASSIGNMENT.match(text):
            raise ConfigError(
                f"the quote opened here is not closed before line {line + offset}, "
                "so the assignments after it become part of this value",
                f"close the {quote} on line {line}; a value that really spans lines "
                "must not hold NAME=… lines (write them with \\n inside double quotes)",
                path=path,
                line=line,
            )


def resolve_values(entries: list[Entry], environ: Mapping[str, str],
                   path: str = ".env") -> dict[str, str | None]:
    """Values with ``${VAR}`` expanded (from earlier lines, then the environment),
    except inside single quotes, where text is literal. A reference to a variable that
    is set nowhere is an error, not an empty string (fail closed); ``${VAR:-}`` is the
    way to say that empty is fine."""
    values: dict[str, str | None] = {}
    for entry in entries:
        if entry.value is None or entry.quote == "'" or "${" not in entry.value:
            values[entry.key] = entry.value
            continue
        scope = {**environ, **{k: v for k, v in values.items() if v is not None}}
        atoms = [_literal_unless_a_name(atom) for atom in parse_variables(entry.value)]
        for atom in atoms:
            if isinstance(atom, Variable) and atom.default is None and atom.name not in scope:
                raise ConfigError(
                    f"{entry.key} refers to ${{{atom.name}}}, which is set neither earlier "
                    "in the file nor in the environment",
                    f"define {atom.name} first, write ${{{atom.name}:-}} for an empty "
                    "default, or quote the value with ' to keep it literal",
                    path=path, line=entry.line)
        values[entry.key] = "".join(atom.resolve(scope) for atom in atoms)
    return values


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _literal_unless_a_name(atom: Atom) -> Atom:
    """``${…}`` around something that is no variable name (``${d0r!x}`` inside a
    password) is kept as written: python-dotenv would drop it, and an error would quote
    part of the value."""
    if isinstance(atom, Variable) and not _IDENTIFIER.match(atom.name):
        default = "" if atom.default is None else f":-{atom.default}"
        return Literal(f"${{{atom.name}{default}}}")
    return atom


def format_assignment(key: str, value: str) -> str:
    """``KEY='value'`` that python-dotenv reads back exactly and nobody expands.

    A multi-line value goes in double quotes with ``\\n`` escapes, so that no line of it
    can look like an assignment of its own; single quotes (which never expand) are the
    fallback for a multi-line value that also holds ``${``.
    """
    if ("\n" in value or "\r" in value) and "${" not in value:
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
                   .replace("\n", "\\n").replace("\r", "\\r"))
        return f'{key}="{escaped}"'
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"{key}='{escaped}'"


def replace_assignment(text: str, entries: list[Entry], key: str, value: str) -> str:
    """The file with KEY's last assignment replaced (or a new one appended)."""
    assignment = format_assignment(key, value)
    matches = [entry for entry in entries if entry.key == key]
    if not matches:
        prefix = "" if text == "" or text.endswith("\n") else "\n"
        return f"{text}{prefix}{assignment}\n"
    last = matches[-1]
    if re.match(r"export\s", text[last.start : last.end]):
        assignment = f"export {assignment}"  # a file that is also sourced by a shell
    return text[: last.start] + assignment + text[last.end :]
