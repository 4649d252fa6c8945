"""keyrun.mcp.jsonc: JSON with comments parsed with spans, and edits that keep the rest of
the text byte for byte; keyrun.mcp.judge on single values; the profile's TOML writer."""

from __future__ import annotations

import json
import tomllib

import pytest

from keyrun.mcp import jsonc
from keyrun.mcp.judge import AUTHORIZATION_RULE, NAME_RULE, arguments, credential_name, judge
from keyrun.mcp.tomlwrite import dumps

VSCODE = """\ufeff// servers for this workspace
{
  "inputs": [],
  /* one server */
  "servers": {
    "a": {"command": "x", "env": {"K": "v", "L": "w",},},
  },
}
"""


def test_comments_trailing_commas_and_spans() -> None:
    document = jsonc.parse(VSCODE)
    assert not document.strict
    servers = document.root.get("servers")
    assert servers is not None
    entry = servers.get("a")
    assert entry is not None
    env = entry.get("env")
    assert env is not None
    assert [(m.key, m.value.value) for m in env.members] == [("K", "v"), ("L", "w")]
    assert VSCODE[env.start:env.end] == '{"K": "v", "L": "w",}'
    assert jsonc.parse('{"a": [1, 2.5e3, true, null, "\\u00e9\\n"]}').strict


@pytest.mark.parametrize(("text", "where"), [
    ('{"a": 1', "line 1 column 8: the text ends too early"),
    ('{"a": 1}\n{', "line 2 column 1: more text after the end of the value"),
    ("{\n  'a': 1}", "line 2 column 3: unexpected \"'\""),
    ('{"a": "x\ny"}', "line 1 column 7: unexpected '\"'"),
    ("[" * 300 + "]" * 300, "nested too deeply"),
])
def test_malformed_text_names_line_and_column(text: str, where: str) -> None:
    with pytest.raises(jsonc.JsonError, match=where.replace("(", r"\(")):
        jsonc.parse(text)


def _remove(text: str, *keys: str) -> str:
    root = jsonc.parse(text).root
    gone = {i for i, m in enumerate(root.members) if m.key in keys}
    return jsonc.apply(text, jsonc.remove_members(text, root, gone))


@pytest.mark.parametrize(("text", "keys", "expected"), [
    ('{\n  "a": 1,\n  "b": 2,\n  "c": 3\n}\n', ("b",), '{\n  "a": 1,\n  "c": 3\n}\n'),
    ('{\n  "a": 1,\n  "b": 2,\n  "c": 3\n}\n', ("c",), '{\n  "a": 1,\n  "b": 2\n}\n'),
    ('{\n  "a": 1,\n  "b": 2,\n  "c": 3\n}\n', ("b", "c"), '{\n  "a": 1\n}\n'),
    ('{\n  "a": 1,\n  "b": 2,\n  "c": 3\n}\n', ("a", "b"), '{\n  "c": 3\n}\n'),
    ('{\n  "a": 1,\n  "b": 2,\n  "c": 3\n}\n', ("a", "c"), '{\n  "b": 2\n}\n'),
    ('{"a": 1, "b": 2, "c": 3}', ("b",), '{"a": 1, "c": 3}'),
    ('{"a": 1, "b": 2, "c": 3}', ("c",), '{"a": 1, "b": 2}'),
    ('{"a": 1, "b": 2}', ("a", "b"), "{}"),
    ('{\r\n  "a": 1,\r\n  "b": 2\r\n}', ("b",), '{\r\n  "a": 1\r\n}'),
    ('{\n  "a": 1, // one\n  "b": 2, // two\n}', ("a",), '{\n  "b": 2, // two\n}'),
    ('{\n  "a": 1, // one\n  "b": 2, // two\n}', ("b",), '{\n  "a": 1, // one\n}'),
])
def test_removing_members_keeps_the_rest(text: str, keys: tuple[str, ...],
                                         expected: str) -> None:
    assert _remove(text, *keys) == expected


def test_arrays_keep_their_layout() -> None:
    multi = '{"args": [\n    "a",\n    "b"\n  ]}'
    node = jsonc.parse(multi).root.get("args")
    assert jsonc.array_text(multi, node, ['"x"', '"y"']) == '[\n    "x",\n    "y"\n  ]'
    single = '{"args": ["a"]}'
    node = jsonc.parse(single).root.get("args")
    assert jsonc.array_text(single, node, ['"x"', '"y"']) == '["x", "y"]'


def test_insert_after_a_member_on_its_own_line() -> None:
    text = '{\n  "command": "x",\n  "env": {}\n}'
    root = jsonc.parse(text).root
    member = root.member("command")
    assert member is not None
    edited = jsonc.apply(text, [jsonc.insert_after(text, member, "args", '["y"]')])
    assert edited == '{\n  "command": "x",\n  "args": ["y"],\n  "env": {}\n}'


def test_overlapping_edits_are_refused() -> None:
    with pytest.raises(ValueError, match="overlapping"):
        jsonc.apply("abcdef", [jsonc.Edit(0, 3, "x"), jsonc.Edit(2, 4, "y")])


GITHUB = "ghp_" + "R3kT9mQ2xW8vL5nB7cJ4hF6dS1aZ0pY2uE8g"


@pytest.mark.parametrize(("name", "value", "rule"), [
    ("GITHUB_PERSONAL_ACCESS_TOKEN", GITHUB, "github-token"),
    (None, GITHUB, "github-token"),
    ("DB_PASSWORD", "hunter2x", NAME_RULE),
    ("Authorization", "Bearer Zx9Lm3Qw7Er5Ty1Ui8Op2As4Df6Gh0Jk", NAME_RULE),
    ("X-Api-Key", "Qm7Rt2Lx9Kd4Wv8Np3Zs", "generic-secret"),
    ("X-Api-Key", "hunter2x99", NAME_RULE),
    ("DATABASE", "postgresql://app:" + "Vt8qLm2Zr5Kx9Wn4@db.example.com/app",
     "database-url-password"),
    ("API_KEY", "${USER} " + GITHUB, "github-token"),
    # a "$" inside a password is no reference: no client expands $w0rd there
    ("DB_PASSWORD", "P4$$w0rd!2024", NAME_RULE),
    ("DB_PASSWORD", "Xk29Lq$abc", NAME_RULE),
    # mcp-remote's bridge: the header whole in an argument, or the scheme in a variable
    ("--header", "Authorization: Bearer Zx9Lm3Qw7Er5Ty1Ui8Op2As4Df6Gh0Jk", NAME_RULE),
    ("--header", "Authorization:Bearer Zx9Lm3Qw7Er5Ty1Ui8Op2As4Df6Gh0Jk", NAME_RULE),
    (None, "Authorization: Bearer Zx9Lm3Qw7Er5Ty1Ui8Op2As4Df6Gh0Jk", NAME_RULE),
    ("AUTH_HEADER", "Bearer Zx9Lm3Qw7Er5Ty1Ui8Op2As4Df6Gh0Jk", AUTHORIZATION_RULE),
    ("--header", "X-Api-Key: hunter2x99", NAME_RULE),
])
def test_credentials(name: str | None, value: str, rule: str) -> None:
    verdict = judge(name, value)
    assert verdict is not None
    assert verdict.rule == rule
    assert value not in verdict.preview


@pytest.mark.parametrize(("name", "value"), [
    ("GITHUB_TOKEN", "${input:github-token}"), ("GITHUB_TOKEN", "${env:GITHUB_TOKEN}"),
    ("GITHUB_TOKEN", "${GITHUB_TOKEN}"), ("GITHUB_TOKEN", "$GITHUB_TOKEN"),
    ("Authorization", "Bearer ${env:TOKEN}"), ("API_KEY", "<YOUR_API_KEY>"),
    ("API_KEY", "your-key-here"), ("OPENAI_API_KEY", "sk-..."), ("API_KEY", "xxxxxxxxxxxx"),
    ("SSH_KEY", "~/.ssh/id_ed25519"), ("USE_TOKEN", "true"), ("DB_PASSWORD", "pw"),
    ("LOG_LEVEL", "Qm7Rt2Lx9Kd4Wv8Np3Zs"), ("STRIPE_PUBLISHABLE_KEY", "Qm7Rt2Lx9Kd4Wv8Np3Zs"),
    ("API_KEY", ""), (None, "@modelcontextprotocol/server-github"),
    ("API_KEY", "$apiKey"), ("Authorization", "Bearer $token"), ("DB_PASSWORD", "pw$SUFFIX"),
    ("Authorization", "Basic $USER:$PASS"), ("--header", "Authorization:${AUTH_HEADER}"),
    ("--header", "Authorization: Bearer ${input:token}"), ("AUTH_SCHEME", "Bearer"),
    ("AUTH_HEADER", "Bearer <token>"), ("AUTH_HEADER", "Bearer your-token-here"),
    ("--header", "Content-Type: application/json"),
])
def test_not_credentials(name: str | None, value: str) -> None:
    assert judge(name, value) is None


def test_credential_names() -> None:
    names = ["OPENAI_API_KEY", "api-key", "X-API-Key", "Authorization", "SLACK_BOT_TOKEN",
             "DB_PASSWORD", "CLIENT_SECRET", "GITHUB_PAT", "apikey"]
    assert [n for n in names if not credential_name(n)] == []
    others = ["MAX_TOKENS", "KEY_ID", "TOKEN_URL", "PUBLIC_KEY", "LOG_LEVEL", "AWS_REGION"]
    assert [n for n in others if credential_name(n)] == []


def test_arguments_and_their_flags() -> None:
    found = list(arguments(["-y", "pkg", "--api-key", "A", "--token=B", "C", "-1"]))
    assert [(a.index, a.flag, a.prefix, a.value) for a in found] == [
        (1, "-y", "", "pkg"), (3, "--api-key", "", "A"), (4, "--token", "--token=", "B"),
        (5, None, "", "C"), (6, None, "", "-1")]


def test_profile_toml_round_trips() -> None:
    data = {"project": "mcp", "sources": {"keychain": {"type": "keyring",
                                                       "service": "keyrun/{project}/{env}"}},
            "env": {"a@b c": {"description": 'x "y" \x7f é', "sources": ["keychain"],
                              "pass_env": [], "keys": {"K": {}, "L": {"name": "L_2"}}}}}
    text = dumps(data, "# header\n")
    assert text.startswith("# header\nproject = \"mcp\"\n")
    assert tomllib.loads(text) == data
    assert '"a@b c"' in text
    assert 'L = {name = "L_2"}' in text
    assert json.loads(json.dumps(data)) == tomllib.loads(text)


def test_parts_nobody_wants_are_only_measured() -> None:
    text = ('{"history": [{"a": [1, {"b": "}"}]}], "notes": {/* c */ "x": 1,},\n'
            ' "mcpServers": {"s": {"command": "x"}}}')
    document = jsonc.parse(text, lambda path: not path or path[0] == "mcpServers")
    history = document.root.get("history")
    notes = document.root.get("notes")
    servers = document.root.get("mcpServers")
    assert history is not None
    assert notes is not None
    assert servers is not None
    assert history.items == ()  # measured by the json module, not parsed here
    assert text[history.start:history.end] == '[{"a": [1, {"b": "}"}]}]'
    assert [m.key for m in notes.members] == ["x"]  # comments: parsed here after all
    assert not document.strict
    entry = servers.get("s")
    assert entry is not None
    assert text[entry.start:entry.end] == '{"command": "x"}'
