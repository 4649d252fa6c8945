"""The ``.env`` test cases of python-dotenv, Node's dotenv and dotenvx, read from the
copies vendored in tests/data/dotenv-cases (README.md there names each file's origin).

A case is one ``.env`` text (a fixture file, or a string a test file feeds its parser)
and the environment the original test ran it in."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parent / "data" / "dotenv-cases"


@dataclass(frozen=True)
class Case:
    name: str  # where it comes from, e.g. dotenvx/03bbab7b/tests/.env.expand
    text: str
    environ: dict[str, str] = field(default_factory=dict)


def all_cases() -> list[Case]:
    cases: dict[tuple[str, tuple[tuple[str, str], ...]], Case] = {}
    for case in [*_fixture_files(), *_python_dotenv(), *_node_dotenv_strings()]:
        cases.setdefault((case.text, tuple(sorted(case.environ.items()))), case)
    return list(cases.values())


def _fixture_files() -> Iterator[Case]:
    for path in sorted(ROOT.rglob("*")):
        if path.is_file() and path.name.startswith(".env") and path.parent != ROOT:
            # as bytes: read_text would turn a CR LF file into LF, hiding how keyrun reads it
            yield Case(str(path.relative_to(ROOT)), path.read_bytes().decode("utf-8"))


# python-dotenv: the strings its tests parse, taken from the parametrize tables by name.

def _python_dotenv() -> Iterator[Case]:
    folder = next(ROOT.glob("python-dotenv/*/tests"))
    for source in sorted(folder.glob("test_*.py.txt")):
        label = str(source.relative_to(ROOT)).removesuffix(".txt")
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for function in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            for number, (text, environ) in enumerate(_texts_of(function), start=1):
                yield Case(f"{label}::{function.name}[{number}]", text, environ)


# Which parameters of which test hold .env text (and the environment it ran in).
_PARAMETERS = {
    "test_parse_stream": ("test_input", None),
    "test_dotenv_values_string_io": ("string", "env"),
    "test_dotenv_values_empty_value_with_inline_comment": ("string", None),
    "test_set_key": ("before", None),
}


def _texts_of(function: ast.FunctionDef) -> Iterator[tuple[str, dict[str, str]]]:
    wanted = _PARAMETERS.get(function.name)
    for decorator in function.decorator_list:
        if wanted and isinstance(decorator, ast.Call) and len(decorator.args) == 2:
            names = [n.strip() for n in ast.literal_eval(decorator.args[0]).split(",")]
            if wanted[0] not in names:
                continue
            for row in decorator.args[1].elts:  # type: ignore[attr-defined]
                values = dict(zip(names, row.elts, strict=True))
                environ = ast.literal_eval(values[wanted[1]]) if wanted[1] else {}
                yield ast.literal_eval(values[wanted[0]]), environ
                if function.name == "test_set_key":  # what set_key wrote is a case too
                    yield ast.literal_eval(values["after"]), {}
    for node in ast.walk(function):  # dotenv_path.write_text("…") and io.StringIO("…")
        if (isinstance(node, ast.Call) and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and _call_name(node) in ("write_text", "StringIO")):
            yield node.args[0].value, _patched_environ(function)


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _patched_environ(function: ast.FunctionDef) -> dict[str, str]:
    """The ``@mock.patch.dict(os.environ, {...}, clear=True)`` a test runs under."""
    for decorator in function.decorator_list:
        if (isinstance(decorator, ast.Call) and _call_name(decorator) == "dict"
                and len(decorator.args) == 2):
            return dict(ast.literal_eval(decorator.args[1]))
    return {}


# Node's dotenv: the string literals its parse tests feed the parser.

_BUFFER = re.compile(r"""Buffer\.from\(('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\)""")
_ARRAY = re.compile(r"const cases = \[(.*?)\n  \]", re.S)
_SRC = re.compile(r"""src: ('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_LITERAL = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")


def _node_dotenv_strings() -> Iterator[Case]:
    for source in sorted(ROOT.glob("motdotla-dotenv/*/tests/test-parse*.js")):
        label = str(source.relative_to(ROOT))
        text = source.read_text(encoding="utf-8")
        literals = [m.group(1) for m in _BUFFER.finditer(text)]
        for array in _ARRAY.finditer(text):
            literals += _LITERAL.findall(array.group(1))
        sources = [m.group(1) for m in _SRC.finditer(text)]
        for number, literal in enumerate(literals + sources, start=1):
            yield Case(f"{label}[{number}]", js_string(literal))
        for number, literal in enumerate(sources, start=1):  # as the test surrounds each
            yield Case(f"{label}[surrounded {number}]",
                       f"BEFORE=one\n{js_string(literal)}\nAFTER=two\n")


_JS_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "v": "\v", "b": "\b", "0": "\0",
               "\\": "\\", "'": "'", '"': '"', "`": "`"}


def js_string(literal: str) -> str:
    """The value of a quoted JavaScript string literal (the escapes these tests use)."""
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
        elif body[i + 1] == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(_JS_ESCAPES[body[i + 1]])
            i += 2
    return "".join(out)
