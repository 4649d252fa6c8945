"""JSON with comments and trailing commas (VS Code's flavour), parsed with the span of every
value, so that an MCP configuration can be edited in place: the bytes around an edit, its
comments, key order and indentation stay as they were.

    doc = parse(text)
    servers = doc.root.get("mcpServers")
    text = apply(text, [replace(node, '"new"')])
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n\ufeff]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\x00-\x1f]|\\.)*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<literal>true|false|null)
  | (?P<punct>[{}\[\]:,])
  | (?P<bad>.)
""", re.VERBOSE | re.DOTALL)
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
MAX_DEPTH = 256


class JsonError(ValueError):
    """Not JSON (nor JSON with comments): the message names the line and column."""


@dataclass(frozen=True)
class Node:
    """A value and where it is: ``text[start:end]``. ``members`` for an object, ``items``
    for an array; ``value`` is the decoded value of a scalar (containers: None)."""

    kind: str  # object, array, string, number, literal
    start: int
    end: int
    value: Any = None
    members: tuple[Member, ...] = ()
    items: tuple[Node, ...] = ()

    def get(self, key: str) -> Node | None:
        """The value of the last member named ``key`` (JSON.parse keeps the last one)."""
        found = [m.value for m in self.members if m.key == key]
        return found[-1] if found else None

    def member(self, key: str) -> Member | None:
        found = [m for m in self.members if m.key == key]
        return found[-1] if found else None

    def strings(self) -> Iterator[tuple[str, Node]]:
        """An object's members whose values are strings: (name, value node)."""
        for member in self.members:
            if member.value.kind == "string":
                yield member.key, member.value


@dataclass(frozen=True)
class Member:
    """``"key": value`` in an object; ``comma`` is where the comma after it stands."""

    key: str
    key_start: int
    value: Node
    comma: int | None = None

    @property
    def start(self) -> int:
        return self.key_start

    @property
    def end(self) -> int:
        return self.value.end


@dataclass(frozen=True)
class Document:
    """A parsed file: its root value, and whether it holds comments or trailing commas
    (strict JSON stays strict through every edit)."""

    root: Node
    strict: bool


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` with ``new``."""

    start: int
    end: int
    new: str = field(default="")


Path = tuple[str, ...]


def parse(text: str, wanted: Callable[[Path], bool] | None = None) -> Document:
    """Parse ``text``; raises :class:`JsonError` naming the line and column.

    ``wanted`` says which objects and arrays (by their keys from the root) need their
    members: the others are only measured, at the speed of the json module when they hold
    plain JSON (``~/.claude.json`` keeps megabytes of history beside its servers)."""
    parser = _Parser(text, wanted)
    root = parser.value(0, ())
    parser.expect_end()
    return Document(root, not parser.relaxed)


_DECODER = json.JSONDecoder()


class _Parser:
    def __init__(self, text: str, wanted: Callable[[Path], bool] | None) -> None:
        self.text = text
        self.wanted = wanted
        self.relaxed = False
        self.tokens = self._significant(0)
        self.current: re.Match[str] | None = next(self.tokens, None)

    def _significant(self, start: int) -> Iterator[re.Match[str]]:
        for match in _TOKEN.finditer(self.text, start):
            kind = match.lastgroup
            if kind == "comment":
                self.relaxed = True
            elif kind == "bad":
                raise self.error(match.start(), f"unexpected {match.group()!r}")
            elif kind != "space":
                yield match

    def error(self, offset: int, message: str) -> JsonError:
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return JsonError(f"line {line} column {column}: {message}")

    def take(self) -> re.Match[str]:
        token = self.current
        if token is None:
            raise self.error(len(self.text), "the text ends too early")
        self.current = next(self.tokens, None)
        return token

    def peek(self, punct: str) -> bool:
        return self.current is not None and self.current.group() == punct

    def expect(self, punct: str) -> re.Match[str]:
        token = self.take()
        if token.group() != punct:
            raise self.error(token.start(), f"expected {punct!r}, found {token.group()[:20]!r}")
        return token

    def expect_end(self) -> None:
        extra = self.current or next(self.tokens, None)  # reading on finds trailing comments
        if extra is not None:
            raise self.error(extra.start(), "more text after the end of the value")

    def value(self, depth: int, path: Path) -> Node:
        token = self.take()
        kind, text = token.lastgroup, token.group()
        if depth > MAX_DEPTH:
            raise self.error(token.start(), "nested too deeply")
        if text in "{[" and self.wanted is not None and not self.wanted(path):
            skipped = self.skip(token)
            if skipped is not None:
                return skipped
        if text == "{":
            return self.object(token, depth, path)
        if text == "[":
            return self.array(token, depth, path)
        if kind == "string":
            return Node("string", token.start(), token.end(), json.loads(text))
        if kind == "number":
            return Node("number", token.start(), token.end(), json.loads(text))
        if kind == "literal":
            return Node("literal", token.start(), token.end(), _LITERALS[text])
        raise self.error(token.start(), f"expected a value, found {text[:20]!r}")

    def skip(self, opening: re.Match[str]) -> Node | None:
        """A container nobody needs the members of, measured by the json module; None when
        it is not plain JSON (comments, trailing commas): then it is parsed here."""
        try:
            _, end = _DECODER.raw_decode(self.text, opening.start())
        except (ValueError, RecursionError):
            return None
        self.tokens = self._significant(end)
        self.current = next(self.tokens, None)
        kind = "object" if opening.group() == "{" else "array"
        return Node(kind, opening.start(), end)

    def object(self, opening: re.Match[str], depth: int, path: Path) -> Node:
        members: list[Member] = []
        while not self.peek("}"):
            key = self.take()
            if key.lastgroup != "string":
                raise self.error(key.start(), "expected a quoted key")
            self.expect(":")
            name = json.loads(key.group())
            value = self.value(depth + 1, (*path, name))
            comma = self.current.start() if self.current and self.peek(",") else None
            members.append(Member(name, key.start(), value, comma))
            if comma is None:
                break
            self.take()
            if self.peek("}"):
                self.relaxed = True  # a trailing comma
        closing = self.expect("}")
        return Node("object", opening.start(), closing.end(), members=tuple(members))

    def array(self, opening: re.Match[str], depth: int, path: Path) -> Node:
        items: list[Node] = []
        while not self.peek("]"):
            items.append(self.value(depth + 1, (*path, "[]")))
            if not self.peek(","):
                break
            self.take()
            if self.peek("]"):
                self.relaxed = True
        closing = self.expect("]")
        return Node("array", opening.start(), closing.end(), items=tuple(items))


# -- edits ------------------------------------------------------------------------------------

def apply(text: str, edits: Sequence[Edit]) -> str:
    """``text`` with the edits made (they must not overlap)."""
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise ValueError("overlapping edits")
    parts, at = [], 0
    for edit in ordered:
        parts += [text[at:edit.start], edit.new]
        at = edit.end
    parts.append(text[at:])
    return "".join(parts)


def replace(node: Node, new: str) -> Edit:
    return Edit(node.start, node.end, new)


def line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def indent_of(text: str, offset: int) -> str:
    """The whitespace that begins the line holding ``offset``."""
    start = line_start(text, offset)
    return text[start:start + len(text[start:]) - len(text[start:].lstrip(" \t"))]


def newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def remove_members(text: str, obj: Node, gone: set[int]) -> list[Edit]:
    """Take the members at the indexes ``gone`` out of ``obj``: their whole lines when they
    stand on lines of their own, and the commas that separated them (before a run that
    ends the object, the comma of the member kept before it)."""
    edits: list[Edit] = []
    members = obj.members
    if len(gone) == len(members):
        return [Edit(obj.start + 1, obj.end - 1)]
    for first, last in _runs(sorted(gone)):
        head, tail = members[first], members[last]
        own_lines = text[line_start(text, head.start):head.start].strip() == ""
        if tail.comma is not None:  # a comma follows the run: remove up to the next member
            start = line_start(text, head.start) if own_lines else head.start
            edits.append(Edit(start, _after_comma(text, tail.comma)))
            continue
        previous = members[first - 1]  # the run ends the object, and a member stands before
        assert previous.comma is not None
        end = _line_end(text, tail.end) if own_lines else tail.end
        edits.append(Edit(previous.comma, end))
    return edits


def _runs(indexes: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Consecutive indexes as (first, last) pairs."""
    start = previous = indexes[0]
    for index in indexes[1:]:
        if index != previous + 1:
            yield start, previous
            start = index
        previous = index
    yield start, previous


def _after_comma(text: str, comma: int) -> int:
    """Past the comma, the blanks and comment that end its line, and the line break."""
    at = comma + 1
    rest = text[at:]
    stripped = rest.lstrip(" \t")
    at += len(rest) - len(stripped)
    if stripped.startswith("//"):
        at = text.find("\n", at) if "\n" in text[at:] else len(text)
    if text.startswith("\r\n", at):
        return at + 2
    if text.startswith("\n", at):
        return at + 1
    return at


def _line_end(text: str, offset: int) -> int:
    """The end of the line holding ``offset`` when only blanks follow it there, else
    ``offset`` itself (the closing bracket may share the line)."""
    end = text.find("\n", offset)
    end = len(text) if end == -1 else end
    if text[offset:end].strip():
        return offset
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def array_text(text: str, old: Node | None, items: Sequence[str]) -> str:
    """A JSON array of the already encoded ``items``, laid out like ``old``: one per line
    at its items' indentation when it spread over several lines, else on one line."""
    if old is not None and old.items and "\n" in text[old.start:old.end]:
        newline = newline_of(text)
        inner = indent_of(text, old.items[0].start)
        outer = indent_of(text, old.end - 1)
        return ("[" + newline + ("," + newline).join(inner + item for item in items)
                + newline + outer + "]")
    return "[" + ", ".join(items) + "]"


def insert_after(text: str, member: Member, key: str, value: str) -> Edit:
    """A new member ``"key": value`` right after ``member``, on its own line when that one
    stands on its own."""
    own_line = text[line_start(text, member.start):member.start].strip() == ""
    separator = (newline_of(text) + indent_of(text, member.start)) if own_line else " "
    return Edit(member.end, member.end, f",{separator}{encode(key)}: {value}")


def encode(value: str) -> str:
    """A JSON string as a person would write it (non-ASCII characters kept)."""
    return json.dumps(value, ensure_ascii=False)
