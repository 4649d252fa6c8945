"""`keyrun mcp scan` and `keyrun mcp protect`, black-box: a HOME with Claude Desktop, Claude
Code, Cursor and VS Code configurations holding format-valid (fake) keys; keyrun run as a real
process; then every rewritten entry started the way an MCP client starts it (its command and
args, its env over the parent's, from /) with a server that dumps what it received. The
keychain is a real Secret Service."""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keyrun.mcp import jsonc
from keyrun.mcp.judge import judge
from tests.conftest import SecretService
from tests.helpers import clean_env, keyrun, write

PY = sys.executable
SERVER = """\
import json, os, sys
with open(os.environ["DUMP_TO"], "w") as out:
    json.dump({"env": dict(os.environ), "argv": sys.argv[1:], "cwd": os.getcwd()}, out)
"""


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def fake_keys(seed: int) -> dict[str, str]:
    """Format-valid keys, made up here (never a real one), each found by its scan rule."""
    rng = random.Random(seed)
    keys = {
        "github": "ghp_" + _token(rng, 36),
        "openai": "sk-proj-" + _token(rng, 56),
        "anthropic": "sk-ant-api03-" + _token(rng, 93) + "AA",
        "slack": "xoxb-" + str(rng.randrange(10**11, 10**12)) + "-" + _token(rng, 24),
        "stripe": "sk_live_" + _token(rng, 32),
        "groq": "gsk_" + _token(rng, 52),
        "postgres": f"postgresql://app:{_token(rng, 18)}@db.internal:5432/app",
        "linear": "Bearer " + _token(rng, 40),
    }
    rules = {"github": "github-token", "openai": "openai-api-key",
             "anthropic": "anthropic-api-key", "slack": "slack-token",
             "stripe": "stripe-secret-key", "groq": "groq-api-key",
             "postgres": "database-url-password"}
    for name, rule in rules.items():
        verdict = judge(None, keys[name])
        assert verdict is not None, name
        assert verdict.rule == rule
    return keys


@dataclass
class Home:
    root: Path  # $HOME
    project: Path  # a project directory with .vscode/mcp.json, known to Claude Code
    dumps: Path
    keys: dict[str, str]
    files: dict[str, Path]

    def dump(self, server: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dumps / f"{server}.json").read_text())
        return data


def _entry(home_dumps: Path, server: str, args: list[str] | None = None,
           env: dict[str, str] | None = None, **more: Any) -> dict[str, Any]:
    return {**more, "command": PY, "args": [str(home_dumps.parent / "server.py"), *(args or [])],
            "env": {"DUMP_TO": str(home_dumps / f"{server}.json"), **(env or {})}}


def build_home(tmp_path: Path, keys: dict[str, str]) -> Home:
    root = tmp_path / "home"
    project = root / "code" / "agent"
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    write(tmp_path / "server.py", SERVER)
    files = {}
    desktop = {"mcpServers": {
        "github": _entry(dumps, "github", ["-y", "@modelcontextprotocol/server-github"], {
            "GITHUB_PERSONAL_ACCESS_TOKEN": keys["github"], "LOG_LEVEL": "debug"}),
        "postgres": _entry(dumps, "postgres", [keys["postgres"]]),
        "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem",
                                                  "/tmp"]},
    }, "globalShortcut": "Ctrl+Space"}
    files["desktop"] = write(root / ".config" / "Claude" / "claude_desktop_config.json",
                             json.dumps(desktop, indent=2) + "\n", mode=0o600)
    claude = {"numStartups": 12, "mcpServers": {
        "openai": _entry(dumps, "openai", env={"OPENAI_API_KEY": keys["openai"]},
                         type="stdio")},
        "projects": {str(project): {"allowedTools": [], "mcpServers": {
            "anthropic": _entry(dumps, "anthropic", env={"ANTHROPIC_API_KEY": keys["anthropic"]},
                                type="stdio")}, "hasTrustDialogAccepted": True}},
        "userID": "5f0c"}
    files["claude"] = write(root / ".claude.json", json.dumps(claude, indent=2), mode=0o600)
    cursor = {"mcpServers": {
        "slack": _entry(dumps, "slack", env={"SLACK_BOT_TOKEN": keys["slack"],
                                             "SLACK_TEAM_ID": "T01234567"}),
        "linear": {"url": "https://mcp.linear.app/sse",
                   "headers": {"Authorization": keys["linear"]}},
    }}
    files["cursor"] = write(root / ".cursor" / "mcp.json", json.dumps(cursor, indent=4),
                            mode=0o644)
    files["vscode"] = write(project / ".vscode" / "mcp.json", f"""\
// MCP servers of this workspace (VS Code reads comments and trailing commas)
{{
  "inputs": [
    {{"type": "promptString", "id": "unused", "password": true}},
  ],
  "servers": {{
    /* Stripe, with its key as an option */
    "stripe": {{
      "type": "stdio",
      "command": {json.dumps(PY)},
      "args": [
        {json.dumps(str(tmp_path / "server.py"))},
        "--api-key",
        "{keys["stripe"]}",
      ],
      "env": {{"DUMP_TO": {json.dumps(str(dumps / "stripe.json"))}}},
    }},
    "groq": {{"command": {json.dumps(PY)}, "args": [{json.dumps(str(tmp_path / "server.py"))}, "--token={keys["groq"]}"], "env": {{"DUMP_TO": {json.dumps(str(dumps / "groq.json"))}}}}}, // inline
  }},
}}
""", mode=0o644)
    return Home(root, project, dumps, keys, files)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return build_home(tmp_path, fake_keys(1))


@pytest.fixture
def env(secret_service: SecretService, tmp_path: Path, home: Home) -> dict[str, str]:
    variables = clean_env(tmp_path, **secret_service.env)
    variables.pop("PYTHON_KEYRING_BACKEND")
    variables.pop("XDG_CONFIG_HOME", None)
    variables["HOME"] = str(home.root)
    return variables


def mcp(args: list[str], home: Home, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return keyrun(["mcp", *args], cwd=home.project, env=env)


def _project() -> list[str]:
    """A project of its own for each test's keychain items (the Secret Service is shared)."""
    return ["-p", f"mcp-test-{uuid.uuid4().hex[:8]}"]


EXPECTED_FINDINGS = {
    ("Claude Desktop", "github", "env", "GITHUB_PERSONAL_ACCESS_TOKEN", None),
    ("Claude Desktop", "postgres", "args", "args[1]", None),
    ("Claude Code", "openai", "env", "OPENAI_API_KEY", None),
    ("Claude Code", "anthropic", "env", "ANTHROPIC_API_KEY", "PROJECT"),
    ("Cursor", "slack", "env", "SLACK_BOT_TOKEN", None),
    ("Cursor", "linear", "headers", "Authorization", None),
    ("VS Code", "stripe", "args", "--api-key", None),
    ("VS Code", "groq", "args", "--token", None),
}


def _findings(stdout: str, home: Home) -> set[tuple[Any, ...]]:
    rows = json.loads(stdout)["findings"]
    assert all(set(row) == {"client", "path", "server", "field", "variable", "preview",
                            "project"} for row in rows)
    return {(r["client"], r["server"], r["field"], r["variable"],
             "PROJECT" if r["project"] == str(home.project) else r["project"]) for r in rows}


def no_value_anywhere(home: Home, *texts: str, files: bool = True) -> None:
    """No value in ``texts``, nor (``files``) in any file under HOME."""
    for name, value in home.keys.items():
        secret = value.removeprefix("Bearer ")
        for text in texts:
            assert secret not in text, name
        for path in home.root.rglob("*") if files else ():
            if path.is_file() and name != "linear":  # the remote server's header stays
                assert secret.encode() not in path.read_bytes(), f"{name} in {path}"


def test_scan_finds_every_literal_credential(home: Home, env: dict[str, str]) -> None:
    done = mcp(["scan", "--format", "json"], home, env)
    assert done.returncode == 1, done.stderr
    assert _findings(done.stdout, home) == EXPECTED_FINDINGS
    for value in home.keys.values():
        assert value.removeprefix("Bearer ") not in done.stdout + done.stderr
    text = mcp(["scan"], home, env)
    assert text.returncode == 1
    assert text.stdout.splitlines()[0] == (
        f"{home.files['desktop']}:12: Claude Desktop server github: env "
        "GITHUB_PERSONAL_ACCESS_TOKEN: GitHub token (personal, OAuth, user-to-server, "
        f"server-to-server, refresh) (ghp_…{home.keys['github'][-4:]})")
    assert f"server anthropic (project {home.project}): env ANTHROPIC_API_KEY" in text.stdout
    assert "VS Code server groq: --token value: " in text.stdout
    assert text.stderr == ("keyrun: read 4 MCP configuration files (9 servers), 8 findings\n"
                           "next: keyrun mcp protect --dry-run (to see the change), then "
                           "keyrun mcp protect\n")


def test_dry_run_shows_the_change_masked_and_changes_nothing(home: Home,
                                                             env: dict[str, str]) -> None:
    before = {name: (path.read_bytes(), path.stat().st_mtime_ns)
              for name, path in home.files.items()}
    done = mcp(["protect", "--dry-run", *_project()], home, env)
    assert done.returncode == 1, done.stderr
    assert f"+++ {home.files['desktop']} (protected)" in done.stdout
    assert (f'-        "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_…{home.keys["github"][-4:]}",'
            in done.stdout)
    assert "would store GITHUB_PERSONAL_ACCESS_TOKEN (ghp_…" in done.stdout
    assert "[env.github.keys]\nGITHUB_PERSONAL_ACCESS_TOKEN = {}\n" in done.stdout
    for name, path in home.files.items():
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before[name]
    assert not (home.root / ".config" / "keyrun").exists()
    no_value_anywhere(home, done.stdout, done.stderr, files=False)


def _start(entry: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """As an MCP client starts a stdio server: its command and args, its env over ours."""
    child_env = {**env, **entry.get("env", {})}
    return subprocess.run([entry["command"], *entry["args"]], env=child_env, cwd="/",
                          capture_output=True, text=True, timeout=60, check=False)


def _entries(home: Home) -> Iterator[tuple[str, dict[str, Any]]]:
    desktop = json.loads(home.files["desktop"].read_text())["mcpServers"]
    claude = json.loads(home.files["claude"].read_text())
    cursor = json.loads(home.files["cursor"].read_text())["mcpServers"]
    vscode = json.loads(_plain_json(home.files["vscode"].read_text()))["servers"]
    yield "github", desktop["github"]
    yield "postgres", desktop["postgres"]
    yield "openai", claude["mcpServers"]["openai"]
    yield "anthropic", claude["projects"][str(home.project)]["mcpServers"]["anthropic"]
    yield "slack", cursor["slack"]
    yield "stripe", vscode["stripe"]
    yield "groq", vscode["groq"]


def _plain_json(text: str) -> str:
    """VS Code's JSON with comments, as plain JSON (through keyrun's own parser's spans)."""
    document = jsonc.parse(text)

    def plain(node: jsonc.Node) -> Any:
        if node.kind == "object":
            return {m.key: plain(m.value) for m in node.members}
        if node.kind == "array":
            return [plain(item) for item in node.items]
        return node.value

    return json.dumps(plain(document.root))


def test_protect_then_every_server_starts_with_its_keys(home: Home, env: dict[str, str]
                                                       ) -> None:
    originals = {name: path.read_text() for name, path in home.files.items()}
    done = mcp(["protect", *_project()], home, env)
    assert done.returncode == 1, done.stdout + done.stderr  # the remote server is left
    assert ("left header Authorization of linear: a remote server: the client connects to "
            "it itself, so keyrun cannot start it\n  instead: write the header as \"Bearer "
            "${env:LINEAR_TOKEN}\" and start Cursor where LINEAR_TOKEN is set") in done.stdout
    launcher = str(Path(PY).parent / "keyrun")
    expected = {
        "github": ({"GITHUB_PERSONAL_ACCESS_TOKEN": home.keys["github"], "LOG_LEVEL": "debug"},
                   ["-y", "@modelcontextprotocol/server-github"]),
        "postgres": ({"DATABASE_URL": home.keys["postgres"]}, [home.keys["postgres"]]),
        "openai": ({"OPENAI_API_KEY": home.keys["openai"]}, []),
        "anthropic": ({"ANTHROPIC_API_KEY": home.keys["anthropic"]}, []),
        "slack": ({"SLACK_BOT_TOKEN": home.keys["slack"], "SLACK_TEAM_ID": "T01234567"}, []),
        "stripe": ({"API_KEY": home.keys["stripe"]}, ["--api-key", home.keys["stripe"]]),
        "groq": ({"TOKEN": home.keys["groq"]}, [f"--token={home.keys['groq']}"]),
    }
    for server, entry in _entries(home):
        assert entry["command"] == launcher
        assert entry["args"][0] == "-c"
        assert entry["args"][2:5] == ["-e", server.replace("anthropic", "anthropic@agent"), "--"]
        started = _start(entry, env)
        assert started.returncode == 0, (server, started.stderr)
        received = home.dump(server)
        variables, argv = expected[server]
        assert {k: received["env"].get(k) for k in variables} == variables, server
        assert received["argv"] == argv, server
        assert received["env"]["KEYRUN_PROFILE"].endswith(
            "/anthropic@agent" if server == "anthropic" else f"/{server}")
        assert started.stdout == ""
        for value in home.keys.values():
            assert value not in started.stderr
    no_value_anywhere(home, done.stdout, done.stderr,
                      Path(env["KEYRUN_ACCESS_LOG"]).read_text())
    assert home.files["desktop"].stat().st_mode & 0o777 == 0o600
    assert home.files["cursor"].stat().st_mode & 0o777 == 0o644
    _kept_byte_for_byte(home, originals, launcher)


def _kept_byte_for_byte(home: Home, originals: dict[str, str], launcher: str) -> None:
    profiles = home.root / ".config" / "keyrun" / "mcp"
    desktop = home.files["desktop"].read_text()
    github = json.loads(originals["desktop"])["mcpServers"]["github"]
    expected = originals["desktop"].replace(
        f'"command": {json.dumps(PY)},\n      "args": [\n        '
        f'{json.dumps(github["args"][0])},',
        f'"command": {json.dumps(launcher)},\n      "args": [\n        "-c",\n        '
        f'"{profiles / "claude-desktop.toml"}",\n        "-e",\n        "github",\n        '
        f'"--",\n        {json.dumps(PY)},\n        {json.dumps(github["args"][0])},', 1)
    expected = expected.replace(
        f'        "GITHUB_PERSONAL_ACCESS_TOKEN": "{home.keys["github"]}",\n', "")
    head = expected.split('"postgres"')[0]
    assert desktop.startswith(head)
    assert desktop.endswith(originals["desktop"][originals["desktop"].index('    "filesystem"'):])
    vscode = home.files["vscode"].read_text()
    for line in originals["vscode"].splitlines():
        if line.strip().startswith(("//", "/*", '{"type": "promptString"')) or "// inline" in line:
            assert line.split("//")[-1] in vscode
    assert vscode.startswith(originals["vscode"].split('    "stripe"')[0])
    claude = json.loads(home.files["claude"].read_text())
    assert claude["numStartups"] == 12
    assert claude["userID"] == "5f0c"
    assert list(claude) == ["numStartups", "mcpServers", "projects", "userID"]
    assert home.files["claude"].read_text().startswith('{\n  "numStartups": 12,\n  "mcpServers"')


def test_protect_twice_changes_nothing_the_second_time(home: Home, env: dict[str, str]
                                                      ) -> None:
    project = _project()
    first = mcp(["protect", *project], home, env)
    assert first.returncode == 1, first.stderr
    files = [*home.files.values(), *(home.root / ".config" / "keyrun" / "mcp").iterdir()]
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files}
    second = mcp(["protect", *project], home, env)
    assert second.returncode == 1
    assert second.stdout.startswith(f"{home.files['cursor']}: left header Authorization")
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files} == before
    scan = mcp(["scan", "--format", "json"], home, env)
    assert _findings(scan.stdout, home) == {("Cursor", "linear", "headers", "Authorization",
                                             None)}
    text = mcp(["scan"], home, env)  # what is left is not protect's to move: no loop
    assert text.stderr.endswith("\nnext: keyrun mcp protect --dry-run names, for each remote "
                                "server, the client's own way to keep the header out of the "
                                "file (keyrun cannot start a server the client connects to)\n")


def test_a_key_added_later_joins_the_servers_environment(home: Home, env: dict[str, str]
                                                        ) -> None:
    project = _project()
    assert mcp(["protect", *project], home, env).returncode == 1
    text = home.files["desktop"].read_text()
    extra = "sk-ant-api03-" + _token(random.Random(7), 93) + "AA"
    text = text.replace('"LOG_LEVEL": "debug"', f'"LOG_LEVEL": "debug",\n        '
                        f'"ANTHROPIC_API_KEY": "{extra}"')
    home.files["desktop"].write_text(text)
    done = mcp(["protect", *project], home, env)
    assert done.returncode == 1
    assert f"{home.files['desktop']}: github: ANTHROPIC_API_KEY moved to " in done.stdout
    entry = json.loads(home.files["desktop"].read_text())["mcpServers"]["github"]
    assert entry["args"][:5] == ["-c", entry["args"][1], "-e", "github", "--"]
    assert entry["args"][5:7] == [PY, str(home.dumps.parent / "server.py")]  # not wrapped twice
    assert _start(entry, env).returncode == 0
    received = home.dump("github")["env"]
    assert received["ANTHROPIC_API_KEY"] == extra
    assert received["GITHUB_PERSONAL_ACCESS_TOKEN"] == home.keys["github"]


def test_one_server_name_in_two_clients_with_two_values(home: Home, env: dict[str, str]
                                                       ) -> None:
    other = "ghp_" + _token(random.Random(9), 36)
    cursor = json.loads(home.files["cursor"].read_text())
    cursor["mcpServers"]["github"] = _entry(home.dumps, "github-cursor",
                                            env={"GITHUB_PERSONAL_ACCESS_TOKEN": other})
    home.files["cursor"].write_text(json.dumps(cursor, indent=4))
    done = mcp(["protect", *_project()], home, env)
    assert done.returncode == 1, done.stderr
    assert "/github / GITHUB_PERSONAL_ACCESS_TOKEN_2" in done.stdout
    entries = dict(_entries(home))
    assert _start(entries["github"], env).returncode == 0
    assert home.dump("github")["env"]["GITHUB_PERSONAL_ACCESS_TOKEN"] == home.keys["github"]
    cursor_entry = json.loads(home.files["cursor"].read_text())["mcpServers"]["github"]
    assert _start(cursor_entry, env).returncode == 0
    assert home.dump("github-cursor")["env"]["GITHUB_PERSONAL_ACCESS_TOKEN"] == other
    profile = (home.root / ".config" / "keyrun" / "mcp" / "cursor.toml").read_text()
    assert 'GITHUB_PERSONAL_ACCESS_TOKEN = {name = "GITHUB_PERSONAL_ACCESS_TOKEN_2"}' in profile


def test_to_a_dotenv_file_outside_git(home: Home, env: dict[str, str], tmp_path: Path) -> None:
    (home.project / ".git").mkdir()
    inside = mcp(["protect", "--to", f"dotenv:{home.project / 'mcp.env'}"], home, env)
    assert inside.returncode == 2
    assert f"is inside the git work tree {home.project}" in inside.stderr
    store = tmp_path / "private" / "mcp.env"
    done = mcp(["protect", "--to", f"dotenv:{store}"], home, env)
    assert done.returncode == 1, done.stderr
    assert store.stat().st_mode & 0o777 == 0o600
    assert f"GITHUB_PERSONAL_ACCESS_TOKEN='{home.keys['github']}'" in store.read_text()
    assert "is in the git work tree" in done.stderr  # .vscode/mcp.json is in a work tree now
    for server, entry in _entries(home):
        assert _start(entry, env).returncode == 0, server
    assert home.dump("slack")["env"]["SLACK_BOT_TOKEN"] == home.keys["slack"]
    no_value_anywhere(home, done.stdout, done.stderr)


def test_to_a_source_of_a_keyrun_toml(home: Home, env: dict[str, str], tmp_path: Path) -> None:
    team = tmp_path / "team"
    write(team / "keyrun.toml", 'project = "support-bot"\n[sources.shared]\ntype = "dotenv"\n'
          'path = "mcp.env"\n[env.dev]\nsources = ["shared"]\n')
    done = mcp(["protect", "-c", str(team / "keyrun.toml"), "--to", "shared"], home, env)
    assert done.returncode == 1, done.stderr
    profile = (home.root / ".config" / "keyrun" / "mcp" / "cursor.toml").read_text()
    assert 'project = "support-bot"' in profile
    assert f'path = "{team / "mcp.env"}"' in profile
    assert home.keys["slack"] in (team / "mcp.env").read_text()
    entry = json.loads(home.files["cursor"].read_text())["mcpServers"]["slack"]
    assert _start(entry, env).returncode == 0
    assert home.dump("slack")["env"]["SLACK_BOT_TOKEN"] == home.keys["slack"]
    wrong = mcp(["protect", "--to", "shared"], home, env)
    assert wrong.returncode == 2
    assert "--to shared: a source of which keyrun.toml?" in wrong.stderr


def test_unreadable_files_are_named_and_skipped(home: Home, env: dict[str, str],
                                                tmp_path: Path) -> None:
    broken = write(home.root / ".codeium" / "windsurf" / "mcp_config.json", '{"mcpServers": {')
    done = mcp(["scan", "--format", "json"], home, env)
    assert done.returncode == 1
    assert (f"keyrun: warning: skipped {broken}: not valid JSON: line 1 column 17: the text "
            "ends too early\n") in done.stderr
    assert len(json.loads(done.stdout)["findings"]) == 8
    alone = tmp_path / "alone"
    alone.mkdir()
    only_broken = clean_env(tmp_path, HOME=str(alone))
    nothing = keyrun(["mcp", "scan", str(broken), str(tmp_path / "missing.json")], cwd=alone,
                     env=only_broken)
    assert nothing.returncode == 125
    assert f"skipped {tmp_path / 'missing.json'}: no such file" in nothing.stderr
    clean = keyrun(["mcp", "scan"], cwd=alone, env=only_broken)
    assert clean.returncode == 0
    assert clean.stderr == "keyrun: read 0 MCP configuration files (0 servers), 0 findings\n"


def test_what_comes_from_the_file_is_escaped(home: Home, env: dict[str, str],
                                             tmp_path: Path) -> None:
    odd = tmp_path / "odd" / "mcp.json"
    write(odd, json.dumps({"mcpServers": {"evil\x1b[2J\u202ename": {
        "command": "x", "env": {"API_\x07KEY": "Qm7Rt2Lx9Kd4Wv8Np3Zs"}}}}))
    done = mcp(["scan", str(odd)], home, env)
    assert "\x1b" not in done.stdout
    assert "\x07" not in done.stdout
    assert "\u202e" not in done.stdout
    assert "server evil\\x1b[2J\\u202ename: env API_\\x07KEY" in done.stdout


def test_a_linked_configuration_stays_a_link(home: Home, env: dict[str, str],
                                             tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles" / "cursor-mcp.json"
    dotfiles.parent.mkdir()
    home.files["cursor"].replace(dotfiles)
    home.files["cursor"].symlink_to(dotfiles)
    done = mcp(["protect", "--to", f"dotenv:{tmp_path / 'mcp.env'}"], home, env)
    assert done.returncode == 1, done.stderr
    assert home.files["cursor"].is_symlink()
    assert home.keys["slack"] not in dotfiles.read_text()
    assert dotfiles.stat().st_mode & 0o777 == 0o644
    assert json.loads(dotfiles.read_text())["mcpServers"]["slack"]["args"][3] == "slack"


def test_a_file_changed_meanwhile_is_left_as_it_is(home: Home, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from keyrun.errors import ConfigError
    from keyrun.mcp import carry_out, choose_store, plan, scan_configs

    environ = {"HOME": str(home.root)}
    monkeypatch.setenv("KEYRUN_ACCESS_LOG", "off")
    result = scan_configs([], home=home.root, cwd=home.project, environ=environ)
    store = choose_store(f"dotenv:{tmp_path / 'mcp.env'}", config=None, project=None,
                         environ=environ, cwd=tmp_path)
    protection = plan(result, store, launcher=["/opt/keyrun"], environ=environ,
                      home=home.root)
    desktop = next(p for p in protection.plans if p.config.file.path == home.files["desktop"])
    changed = home.files["desktop"].read_text().replace('"Ctrl+Space"', '"Ctrl+Alt+Space"')
    home.files["desktop"].write_text(changed)
    with pytest.raises(ConfigError, match="changed while keyrun was protecting it"):
        carry_out(desktop, store, environ, protection)
    assert home.files["desktop"].read_text() == changed
    assert [p.name for p in home.files["desktop"].parent.iterdir()] == [
        "claude_desktop_config.json"]  # no temporary or backup file left behind


def test_a_bridge_header_and_a_dollar_in_a_password_move(home: Home, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """mcp-remote's bridge (the form protect itself advises for Claude Desktop) holds the
    header in an argument or in a variable no name rule knows; a "$" inside a password is
    no reference. All three leave the file, and the servers get them as before."""
    token = _token(random.Random(11), 40)
    password = "P4$$w0rd!" + _token(random.Random(12), 8)
    home.keys.update(bridge=token, password=password)
    url = "https://mcp.example.com/mcp"
    desktop = json.loads(home.files["desktop"].read_text())
    desktop["mcpServers"].update({
        "bridge": _entry(home.dumps, "bridge", ["mcp-remote", url, "--header",
                                                f"Authorization: Bearer {token}"]),
        "bridge-env": _entry(home.dumps, "bridge-env",
                             ["mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"],
                             {"AUTH_HEADER": f"Bearer {token}"}),
        "db": _entry(home.dumps, "db", env={"DB_PASSWORD": password}),
    })
    home.files["desktop"].write_text(json.dumps(desktop, indent=2) + "\n")
    scan = mcp(["scan", "--format", "json"], home, env)
    found = {(r["server"], r["variable"]) for r in json.loads(scan.stdout)["findings"]}
    assert {("bridge", "--header"), ("bridge-env", "AUTH_HEADER"),
            ("db", "DB_PASSWORD")} <= found
    done = mcp(["protect", "--to", f"dotenv:{tmp_path / 'mcp.env'}"], home, env)
    assert done.returncode == 1, done.stderr  # Cursor's remote server is left
    servers = json.loads(home.files["desktop"].read_text())["mcpServers"]
    for server in ("bridge", "bridge-env", "db"):
        assert _start(servers[server], env).returncode == 0, server
    assert home.dump("bridge")["argv"] == ["mcp-remote", url, "--header",
                                           f"Authorization: Bearer {token}"]
    assert home.dump("bridge-env")["argv"] == ["mcp-remote", url, "--header",
                                               "Authorization:${AUTH_HEADER}"]
    assert home.dump("bridge-env")["env"]["AUTH_HEADER"] == f"Bearer {token}"
    assert home.dump("db")["env"]["DB_PASSWORD"] == password
    assert token not in home.files["desktop"].read_text()
    assert password not in home.files["desktop"].read_text()
    no_value_anywhere(home, done.stdout, done.stderr, files=False)


def test_a_byte_order_mark_is_kept(home: Home, env: dict[str, str], tmp_path: Path) -> None:
    """A file an editor saved with a byte-order mark is protected like the others (it was
    refused whole, with every other file of the run)."""
    marked = tmp_path / "marked" / "mcp.json"
    entry = _entry(home.dumps, "marked", env={"GITHUB_TOKEN": home.keys["github"]})
    write(marked, "\ufeff" + json.dumps({"mcpServers": {"marked": entry}}, indent=2) + "\n")
    done = mcp(["protect", "--to", f"dotenv:{tmp_path / 'mcp.env'}", str(marked)], home, env)
    assert done.returncode == 1, done.stderr
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf{\n")
    assert home.keys["github"] not in marked.read_text()
    assert home.keys["slack"] not in home.files["cursor"].read_text()  # the others too
    started = json.loads(marked.read_text(encoding="utf-8-sig"))["mcpServers"]["marked"]
    assert _start(started, env).returncode == 0
    assert home.dump("marked")["env"]["GITHUB_TOKEN"] == home.keys["github"]


def test_a_name_given_twice_is_left_and_the_other_files_move(home: Home, env: dict[str, str],
                                                            tmp_path: Path) -> None:
    """JSON lets a file name a server, or a variable, twice (the client reads the last):
    such findings are left with what to do, nothing is stored for them, and the run goes on
    (it stored both values, then failed the whole run reading one back)."""
    twice = tmp_path / "twice" / "mcp.json"
    first, last = home.keys["github"], "ghp_" + _token(random.Random(13), 36)
    server = json.dumps(_entry(home.dumps, "twice")).replace(
        '"env": {', f'"env": {{"GITHUB_TOKEN": "{first}", "GITHUB_TOKEN": "{last}", ')
    write(twice, '{"mcpServers": {\n'
          f'  "twice": {server},\n'
          f'  "dup": {{"command": "x", "env": {{"SLACK_BOT_TOKEN": "{home.keys["slack"]}"}}}},\n'
          f'  "dup": {{"command": "x", "env": {{"OPENAI_API_KEY": "{home.keys["openai"]}"}}}}\n'
          "}}\n")
    text = twice.read_text()
    store = tmp_path / "mcp.env"
    done = mcp(["protect", "--to", f"dotenv:{store}", str(twice)], home, env)
    assert done.returncode == 1, done.stderr
    assert (f"{twice}: left env GITHUB_TOKEN of twice: its env names GITHUB_TOKEN twice\n"
            "  instead: delete the one the client does not use (it reads the last), then run "
            "keyrun mcp protect again\n") in done.stdout
    assert f"{twice}: left env OPENAI_API_KEY of dup: the file names the server dup twice" in (
        done.stdout)
    assert twice.read_text() == text
    assert last not in store.read_text()
    assert home.keys["slack"] not in home.files["cursor"].read_text()  # the others moved
    no_value_anywhere(home, done.stdout, done.stderr, files=False)
