"""Structural tests a rule names with ``check = "…"``: what a regex cannot say about a format
(a JWT's header is base64url of a JSON object that names its algorithm; a Kubernetes Secret's
values sit under ``data:``; a password in a URL is not ``password``). Each takes the secret
and the regex match it came from (``match.string`` is the whole text), and says whether it is
the credential it looks like.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

Check = Callable[[bytes, "re.Match[bytes]"], bool]

# The example token of jwt.io (by its signature), pasted into every tutorial.
_DOCUMENTED_JWT_SIGNATURES = frozenset({b"SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"})


def b64decode(data: bytes, altchars: bytes | None = None) -> bytes | None:
    """Lenient base64 (padding optional); None when it is not base64 at all."""
    data = data.rstrip(b"=")
    if len(data) % 4 == 1:
        return None
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def jwt(secret: bytes, match: re.Match[bytes] | None = None) -> bool:
    """A JSON Web Token: a header and a payload that decode to JSON objects; not the
    documented example."""
    parts = secret.split(b".")
    if len(parts) < 3 or parts[2] in _DOCUMENTED_JWT_SIGNATURES:
        return False
    header, payload = (b64decode(part, b"-_") for part in parts[:2])
    return (header is not None and payload is not None and header.startswith(b'{"')
            and payload.lstrip().startswith(b"{"))


def bedrock_long_term(secret: bytes, match: re.Match[bytes] | None = None) -> bool:
    """An Amazon Bedrock long-term API key: ``ABSK`` and the base64 of ``BedrockAPIKey-…``."""
    return b64decode(secret.removeprefix(b"ABSK")[:16]) == b"BedrockAPIKe"


def bedrock_short_term(secret: bytes, match: re.Match[bytes] | None = None) -> bool:
    """An Amazon Bedrock short-term API key: ``bedrock-api-key-`` and the base64 of a
    presigned URL for ``bedrock.amazonaws.com``."""
    return b64decode(secret.removeprefix(b"bedrock-api-key-")[:28]) == b"bedrock.amazonaws.com"


def discord_bot_token(secret: bytes, match: re.Match[bytes] | None = None) -> bool:
    """A Discord bot token: its first part is the base64 of the bot's user id, a snowflake
    of 17 to 20 digits."""
    user_id = b64decode(secret.split(b".", 1)[0], b"-_")
    return user_id is not None and user_id.isdigit() and 17 <= len(user_id) <= 20


_DOCUMENT_SEPARATOR = re.compile(rb"(?m)^---[ \t]*$")
_SECRET_KIND = re.compile(rb"(?im)^[ \t]*[\"']?kind[\"']?[ \t]*:[ \t]*[\"']?secret[\"']?[ \t]*,?$")
_DATA_KEY = re.compile(rb"(?m)^([ \t]*)(data|stringData)[ \t]*:[ \t]*$")


def kubernetes_secret(secret: bytes, match: re.Match[bytes]) -> bool:
    """A value of a Kubernetes Secret: in a YAML document whose kind is ``Secret``, under its
    ``data:`` (where it must be base64) or ``stringData:`` key."""
    text, at = match.string, match.start("secret")
    start = max((m.end() for m in _DOCUMENT_SEPARATOR.finditer(text, 0, at)), default=0)
    end = _DOCUMENT_SEPARATOR.search(text, at)
    if not _SECRET_KIND.search(text, start, end.start() if end else len(text)):
        return False
    line_start = text.rfind(b"\n", 0, at) + 1
    parent = None
    for candidate in _DATA_KEY.finditer(text, start, line_start):
        parent = candidate
    if parent is None or _indent(text[line_start:at]) <= len(parent.group(1)):
        return False
    block = text[parent.end():line_start].splitlines()
    if any(line.strip() and not line.lstrip().startswith(b"#")
           and _indent(line) <= len(parent.group(1)) for line in block):
        return False  # another key closed the data block
    return parent.group(2) == b"stringData" or bool(b64decode(secret))


def _indent(line: bytes) -> int:
    return len(line) - len(line.lstrip(b" \t"))


# Passwords that stand in for a real one in documentation, tests and default configs.
_STAND_IN_PASSWORDS = frozenset(
    b"password passwd pass pwd secret changeme change_me changeit root admin administrator "
    b"guest user username test testing demo default letmein qwerty postgres mysql redis mongo "
    b"mongodb rabbitmq sa dbpass dbpassword mypassword yourpassword foo bar foobar baz none null "
    b"example sample dummy xxx todo tbd".split())
# … and the example passwords of comics and password advice (hunter2, correct horse battery
# staple), which documentation and tests reuse.
_NOT_A_PASSWORD = re.compile(
    rb"(?i)^[$%{<*#]|password|passwd|your|example|placeholder|changeme|\*\*\*|xxx|\.\.\.|^<.*>$"
    rb"|hunter2|correct.?horse")


def stand_in_password(secret: bytes) -> bool:
    """A password that documentation, tests and default configs stand in for a real one
    (``password``, ``changeme``, ``postgres``, ``hunter2``, ``<…>``); also what
    ``keyrun.placeholders`` asks of a URL in ``.env.example``."""
    bare = secret.lower().rstrip(b"0123456789!")
    return bare in _STAND_IN_PASSWORDS or _NOT_A_PASSWORD.search(secret) is not None


def url_password(secret: bytes, match: re.Match[bytes]) -> bool:
    """A password in a URL that is not a stand-in (``user:password@``, ``${DB_PASSWORD}``,
    ``guest:guest``)."""
    if stand_in_password(secret):
        return False
    text, at = match.string, match.start("secret")
    user = text[text.rfind(b"/", 0, at) + 1:at - 1]
    return user.lower() != secret.lower()


_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_NAME = re.compile(rb"[A-Za-z0-9_.-]*")
_NOT_SECRET_NAME = re.compile(
    rb"(?i)(?:public|pub|publishable|anon|site|csrf|xsrf|cache|page|next|continuation|cursor|"
    rb"nonce|state|sync|pagination|event|input|max|min)[_.-]?(?:api[_.-]?)?(?:key|token)"
    rb"|(?:id|ids|name|names|url|uri|path|file|type|size|length|len|count|version|format|"
    rb"header|field|prefix|hash|algorithm|env|var|ref|expiry|expires|label|mode|usage|"
    rb"provider|endpoint|policy|scope|scopes)$")


def variable_name(match: re.Match[bytes]) -> bytes:
    """The whole name a keyword match stands in (``OPENAI_API_KEY`` around ``KEY``)."""
    text, start = match.string, match.start()
    while start > 0 and text[start - 1] in _NAME_CHARS:
        start -= 1
    return _NAME.match(text, start).group()  # type: ignore[union-attr]


_WORD_OR_NUMBER = re.compile(rb"[A-Za-z]+|[0-9]+")


_SECRET_NAME = re.compile(
    rb"(?i)api[_.-]?(?:key|secret|token)|apikey|secret|credential|passphrase"
    rb"|(?:access|auth|refresh|bearer|bot|session|service)[_.-]?token"
    rb"|(?:access|auth|private|signing|encryption|master|account|service|app|client)[_.-]?key")


def random_value(secret: bytes, match: re.Match[bytes]) -> bool:
    """A value with letters and digits that is no phrase (``sk-rotated-value-0001``: parts
    each all letters or all digits), under a name that says secret (``API_KEY``,
    ``client_secret``, ``auth_token``; not a bare ``token`` or ``key``) and does not mark it
    as public, an id, a name, a URL, a length…"""
    name = variable_name(match)
    if not _SECRET_NAME.search(name) or _NOT_SECRET_NAME.search(name):
        return False
    parts = re.split(rb"[-_.]", secret)
    if len(parts) >= 3 and all(_WORD_OR_NUMBER.fullmatch(part) for part in parts if part):
        return False
    return re.search(rb"[0-9]", secret) is not None and re.search(rb"[A-Za-z]", secret) is not None


_IDENTIFIER_PATH = re.compile(rb"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")


def password_value(secret: bytes, match: re.Match[bytes]) -> bool:
    """A password that is no stand-in, no code (``self.password``), under a name that is not
    a policy (``PASSWORD_MIN_LENGTH``), with at least two kinds of character."""
    if stand_in_password(secret) or _IDENTIFIER_PATH.match(secret):
        return False
    if _NOT_SECRET_NAME.search(variable_name(match)):
        return False
    kinds = (re.search(rb"[a-z]", secret), re.search(rb"[A-Z]", secret),
             re.search(rb"[0-9]", secret), re.search(rb"[^A-Za-z0-9]", secret))
    return sum(kind is not None for kind in kinds) >= 2


def authorization_credentials(secret: bytes, match: re.Match[bytes]) -> bool:
    """Credentials in an Authorization header. Under the ``Basic`` scheme they are the base64
    of ``user-id:password`` (RFC 7617): a value that decodes to no such pair (a phrase, a JWT
    sent as Basic: the JWT rule judges that) is no Basic credential, and a stand-in password
    (``user:password``, ``admin:admin``) is a documentation example, as in a URL."""
    scheme = match.group("scheme") if "scheme" in match.re.groupindex else None
    if scheme is None or scheme.lower() != b"basic":
        return True
    user, colon, password = (b64decode(secret) or b"").partition(b":")
    return bool(colon) and not stand_in_password(password) and user.lower() != password.lower()


CHECKS: dict[str, Check] = {
    "jwt": jwt,
    "bedrock-long-term": bedrock_long_term,
    "bedrock-short-term": bedrock_short_term,
    "kubernetes-secret": kubernetes_secret,
    "discord-bot-token": discord_bot_token,
    "url-password": url_password,
    "random-value": random_value,
    "password-value": password_value,
    "authorization-credentials": authorization_credentials,
}
