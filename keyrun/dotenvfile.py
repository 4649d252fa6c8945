"""Strict ``.env`` parsing on top of python-dotenv's parser.

Every value is exactly the one python-dotenv reads, or the file is refused with its
line (SPEC §5). python-dotenv logs a warning for a line it cannot parse and goes on, and
lets an unterminated quote swallow the lines after it; forms that other tools read
differently (Node's backtick quotes, the shell's ``${X-…}`` ``${X:=…}`` ``${X:?…}``
``${X:+…}``, a ``${…}`` nested in a default, ``${…}`` inside single quotes) it reads in
a way of its own. keyrun refuses each of those instead of guessing. No message quotes
any part of a value: only names, line numbers and the file.
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
    from dotenv.parser import Binding, parse_stream
    from dotenv.variables import Literal, Variable, parse_variables
else:
    parse_stream = _dotenv_module("parser").parse_stream
    _variables = _dotenv_module("variables")
    Literal, Variable = _variables.Literal, _variables.Variable
    parse_variables = _variables.parse_variables

_VALUE_START = re.compile(r"\s*(?:export\s+)?(?:'[^']+'|[^=#\s]+)\s*=[^\S\r\n]*(.?)")
_NEWLINE = re.compile(r"\r\n|\n|\r")
# NAME=value on a line of its own; not a base64 line ending in "=" padding (PEM keys).
_LOOKS_LIKE_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=(?!=|\s*$)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# ${NAME-…} ${NAME:=…} ${NAME:?…} ${NAME:+…} and their colon-less twins: shell operators.
_SHELL_OPERATOR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:[-=?+]|:[=?+])")


class Entry(NamedTuple):
    key: str
    value: str | None  # None for a bare ``NAME`` line (only where names_only allows one)
    line: int
    quote: str  # "'", '"' or "" (unquoted)
    start: int  # offsets of the assignment in the text, line break excluded
    end: int


def parse_dotenv(text: str, path: str, *, names_only: bool = False) -> list[Entry]:
    """Every assignment in file order; raise ConfigError naming the line of any mistake.

    ``names_only`` is for files whose values are never used (``.env.example``): a bare
    ``NAME`` line is a name there, and the values' forms are not checked."""
    entries: list[Entry] = []
    bindings = list(parse_stream(io.StringIO(text)))
    # python-dotenv opens the file in text mode, where a CR LF or a lone CR is LF even inside
    # quotes: values come from that reading, offsets from ``text`` (keyrun set keeps its
    # line ends). Both parses see the same lines, so their bindings pair up one to one.
    read = bindings if "\r" not in text else list(
        parse_stream(io.StringIO(_NEWLINE.sub("\n", text))))
    offset = len(text) - sum(len(b.original.string) for b in bindings)  # a BOM it dropped
    for binding, as_read in zip(bindings, read, strict=True):
        original = binding.original.string
        body = original.lstrip()
        start = offset + len(original) - len(body)
        line = binding.original.line + len(_NEWLINE.findall(original[: len(original) - len(body)]))
        offset += len(original)
        if binding.error or as_read.error:
            raise ConfigError(
                "this line cannot be parsed",
                "write NAME=value, quote values with spaces or '#', close every quote",
                path=path,
                line=line,
            )
        if as_read.key is None:
            continue
        quote = _quote_of(original)
        written = as_read.original.string.lstrip().rstrip("\n")
        if quote and "\n" in written:
            _reject_swallowed_lines(written, quote, path, line)
        if not names_only:
            _reject_foreign_forms(as_read, quote, path, line)
        end = start + len(body.rstrip("\r\n"))
        entries.append(Entry(as_read.key, as_read.value, line, quote, start, end))
    return entries


def _quote_of(original: str) -> str:
    match = _VALUE_START.match(original)
    char = match.group(1) if match else ""
    return char if char in ("'", '"', "`") else ""


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


def _reject_foreign_forms(binding: Binding, quote: str, path: str, line: int) -> None:
    """Refuse what python-dotenv reads one way and other tools another (SPEC §5)."""
    key, value = binding.key, binding.value
    if value is None:
        raise ConfigError(
            "this line has no '=': it is neither NAME=value, nor a comment, nor blank",
            "write NAME= for an empty value, or remove the line; if it continues a value "
            "from the line above, put that value in double quotes",
            path=path, line=line)
    if quote == "`":
        raise ConfigError(
            f"{key}'s value starts with a backtick: Node's dotenv reads `…` as quotes "
            "(spanning lines), python-dotenv keeps the backtick and ends the value at the line",
            "use double quotes (a line break in them is kept, or write \\n)",
            path=path, line=line)
    problem = _expansion_problem(key or "", value, quote)
    if problem:
        raise ConfigError(f"{key}'s value {problem[0]}", problem[1], path=path, line=line)


def _expansion_problem(key: str, value: str, quote: str) -> tuple[str, str] | None:
    """What is wrong with the ``${…}`` in a value, as (message, hint); None if nothing."""
    if "${" not in value:
        return None
    atoms = list(parse_variables(value))
    variables = [a for a in atoms if isinstance(a, Variable)]
    if quote == "'" and variables:
        return ("holds ${…} inside single quotes: python-dotenv expands it there, "
                "the shell, dotenvx and docker compose keep it as written",
                "use double quotes if it is meant to expand; a value that must hold ${ as "
                "written cannot live in a .env file (python-dotenv has no escape for it): "
                "keep it in another source")
    if _SHELL_OPERATOR.search(value):
        return ("uses a shell form (${NAME-…}, ${NAME:=…}, ${NAME:?…} or ${NAME:+…}) that "
                "python-dotenv does not read as the shell does",
                "write ${NAME:-default}, the one default python-dotenv reads")
    for atom in variables:
        if atom.default is not None and "${" in atom.default:
            return ("has a ${…} nested in a default, which python-dotenv ends at the first }",
                    "define the inner value on a line of its own and refer to it, or write "
                    "the default out")
        if atom.name == key and atom.default is not None:
            return ("refers to itself through a default, which other tools resolve "
                    "differently",
                    "give the default a name of its own on a line above")
    if any(isinstance(a, Literal) and "${" in a.value for a in atoms) or any(
            not _IDENTIFIER.match(a.name) for a in variables):
        return ("holds a ${ that is not ${NAME} or ${NAME:-default}: python-dotenv would "
                "drop it or keep it, where other tools differ",
                "write ${NAME} around a variable name only; a value that must hold ${ as "
                "written cannot live in a .env file: keep it in another source")
    return None


def resolve_values(entries: list[Entry], environ: Mapping[str, str],
                   path: str = ".env") -> dict[str, str | None]:
    """Values with ``${VAR}`` expanded as python-dotenv does (from earlier lines, then the
    environment). A reference to a variable that is set nowhere is an error, not an
    empty string (fail closed); ``${VAR:-}`` is the way to say that empty is fine."""
    values: dict[str, str | None] = {}
    for entry in entries:
        if entry.value is None or "${" not in entry.value:
            values[entry.key] = entry.value
            continue
        scope = {**environ, **{k: v for k, v in values.items() if v is not None}}
        atoms = list(parse_variables(entry.value))
        variables = [atom for atom in atoms if isinstance(atom, Variable)]
        for number, atom in enumerate(variables, start=1):
            if atom.default is None and atom.name not in scope:
                # Never named: the ${…} is part of the value, maybe a password's.
                raise ConfigError(
                    f"{entry.key}'s value refers to a variable (its ${{…}} number {number}) "
                    "that is set neither earlier in the file nor in the environment",
                    "define that variable on a line above, or give it an empty default by "
                    "adding :- before its }; a value that must hold ${ as written cannot live "
                    "in a .env file: keep it in another source",
                    path=path, line=entry.line)
        values[entry.key] = "".join(atom.resolve(scope) for atom in atoms)
    return values


def format_assignment(key: str, value: str) -> str:
    """``KEY='value'`` that python-dotenv reads back exactly.

    A multi-line value goes in double quotes with ``\\n`` escapes, so that no line of it
    can look like an assignment of its own. A value holding ``${`` cannot be written:
    python-dotenv expands it inside any quotes and has no escape for it.
    """
    if "${" in value:
        raise ConfigError(
            f"the value for {key} holds ${{, which python-dotenv expands inside any quotes "
            "(it has no escape for it), so a .env file cannot hold it as written",
            "keep this key in another source (the keychain, a secret manager)")
    if "\n" in value or "\r" in value:
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
