"""Which strings of an MCP server entry are literal credentials.

A value is one when ``keyrun scan``'s rules find a key format in it, or when its name says
credential (``*_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*PASSWORD*``, ``Authorization``…) and the
value is no placeholder (``your-key-here``, ``<API_KEY>``, ``xxxx``: the judgement of
``keyrun.placeholders``), no reference the client or the shell expands (``${input:…}``,
``${env:…}``, ``${VAR}``, ``$VAR``), no path and no flag word (``true``). A value written as
an HTTP header (mcp-remote's ``--header "Authorization: Bearer …"``) is judged under the
header's name, and ``Bearer``/``Basic``/``Token`` followed by a token is a credential under
any name (``AUTH_HEADER``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from keyrun.placeholders import is_placeholder_value
from keyrun.preview import preview
from keyrun.scan import scan_bytes
from keyrun.scan.rules import ruleset

NAME_RULE = "credential-name"
_CREDENTIAL = re.compile(r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PAT)$|PASSWORD|PASSWD|"
                         r"^(?:PROXY_)?AUTHORIZATION$|APIKEY|_KEY_|_TOKEN_|_SECRET_")
_NOT_CREDENTIAL = re.compile(r"PUBLIC|PUBLISHABLE|PARTITION|SORT_KEY|CACHE_KEY|PRIMARY_KEY|"
                             r"_ID$|_FILE$|_PATH$|_URL$|_HOST$")
# What a client, a shell or a template engine fills in when the server starts. A bare $NAME
# inside a value counts only in capitals, as variables are spelled: no client expands it
# there, and in "P4$$w0rd!" or "Xk29$ab" the "$" is part of a password.
REFERENCE = re.compile(r"\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*(?![A-Za-z0-9_])|\{\{[^}]*\}\}|"
                       r"%[A-Za-z_][A-Za-z0-9_]*%")
_SCHEMES = r"(?:Bearer|Basic|Token|Bot|ApiKey|Key)"
_SCHEME = re.compile(rf"\A\s*{_SCHEMES}\s+", re.IGNORECASE)
_WHOLE_REFERENCE = re.compile(rf"\A\s*(?:{_SCHEMES}\s+)?\$[A-Za-z_][A-Za-z0-9_]*\s*\Z",
                              re.IGNORECASE)
_AUTHORIZATION = re.compile(r"\A\s*(?P<scheme>Bearer|Basic|Token)\s+(?P<token>\S{8,})\s*\Z",
                            re.IGNORECASE)
_HEADER_LINE = re.compile(r"\A\s*(?P<name>[A-Za-z][A-Za-z0-9_-]*)\s*:\s*(?P<value>\S.*)\Z",
                          re.DOTALL)
AUTHORIZATION_RULE = "authorization"
_FLAG_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", "nil",
                         "undefined", "enabled", "disabled"})
_PATH = re.compile(r"(?:~|\.{1,2})?/\S*\Z|[A-Za-z]:\\\S*\Z")
MIN_NAMED_VALUE = 4  # shorter values of a credential-like name are flags and counts


@dataclass(frozen=True)
class Verdict:
    """Why a value is a credential: a scan rule's id (or ``credential-name``), what that
    means in words, and the value's masked preview."""

    rule: str
    what: str
    preview: str


def normal_name(name: str) -> str:
    """A variable, header or flag name in one spelling: ``--api-key``, ``X-Api-Key`` and
    ``api_key`` all become ``API_KEY``-like."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def credential_name(name: str) -> bool:
    normal = normal_name(name)
    return bool(_CREDENTIAL.search(normal)) and not _NOT_CREDENTIAL.search(normal)


def judge(name: str | None, value: str) -> Verdict | None:
    """The verdict on ``value``, held by ``name`` (a variable, a header, the flag before an
    argument; None for a bare argument); None when it is no literal credential."""
    if not value.strip() or _WHOLE_REFERENCE.match(value):
        return None
    header = _HEADER_LINE.match(value)
    if header is not None and credential_name(header["name"]):
        return judge(header["name"], header["value"])
    if REFERENCE.search(value):  # templated: only a key format in its literal part counts
        return known_format(name, REFERENCE.sub("", value))
    found = known_format(name, value)
    if found is not None:
        return found
    if name is not None and credential_name(name):
        if stand_in(_SCHEME.sub("", value).strip()):
            return None
        return Verdict(NAME_RULE, f"a literal value for {name}", preview(value))
    scheme = _AUTHORIZATION.match(value)
    if scheme is None or stand_in(scheme["token"]):
        return None
    return Verdict(AUTHORIZATION_RULE, f"a literal {scheme['scheme']} credential",
                   preview(value))


def known_format(name: str | None, value: str) -> Verdict | None:
    """A key format of ``keyrun scan`` in ``value``, read as the JSON member it is (so that
    the rules that want the variable's name beside the value see it)."""
    label = f"{json.dumps(name)}: " if name else ""
    text = label + json.dumps(value)
    for finding in scan_bytes(text.encode("utf-8", "surrogatepass")):
        if finding.column > len(label):
            return Verdict(finding.rule, ruleset().titles().get(finding.rule, finding.rule),
                           finding.preview)
    return None


def stand_in(value: str) -> bool:
    """A value that holds no credential although its name says one: a placeholder (the one
    judgement of ``keyrun.placeholders``, or elided: ``sk-...``), a flag word, a path, or too
    short to be one."""
    return (len(value) < MIN_NAMED_VALUE or value.lower() in _FLAG_WORDS
            or "..." in value or "…" in value or bool(_PATH.match(value))
            or is_placeholder_value(value))


@dataclass(frozen=True)
class Argument:
    """A command-line argument that may hold a credential: its index, the flag it belongs
    to (``--api-key`` for ``--api-key VALUE`` and ``--api-key=VALUE``; None for a bare
    one), the text before the value (``--api-key=``), and the value."""

    index: int
    flag: str | None
    prefix: str
    value: str


def arguments(args: Sequence[str]) -> Iterator[Argument]:
    previous: str | None = None
    for index, arg in enumerate(args):
        if arg.startswith("-") and "=" in arg:
            flag, _, value = arg.partition("=")
            yield Argument(index, flag, f"{flag}=", value)
            previous = None
        elif arg.startswith("-") and len(arg) > 1 and not arg[1:].isdigit():
            previous = arg
        else:
            yield Argument(index, previous, "", arg)
            previous = None
