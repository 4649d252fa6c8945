"""doctor as a person reads it: at 80 columns nothing wraps back to column 0; --json says
why an invalid config stops it; .env.example placeholders judged by their shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import (
    CANARY,
    assert_no_leak,
    clean_env,
    dotenv_project,
    keyrun,
    keyrun_on_terminal,
    write,
)

LONG = "config/team-shared-secrets/support-bot-dev.env"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = dotenv_project(tmp_path / "bot", {"OPENAI_API_KEY": CANARY},
                          '[sources.team]\ntype = "dotenv"\npath = "' + LONG + '"\n')
    config = root / "keyrun.toml"
    write(config, config.read_text().replace('sources = ["local"]', 'sources = ["local", "team"]')
          .replace("[keys]\n", "[keys]\nPINECONE_API_KEY = { optional = true }\n"))
    write(root / LONG, "DATABASE_HOST=db.internal\n", mode=0o644)
    return root


def test_doctor_at_80_columns_wraps_under_its_text(project: Path, tmp_path: Path) -> None:
    code, out, err = keyrun_on_terminal(["doctor"], cwd=project,
                                        env=clean_env(tmp_path, NO_COLOR="1"))
    assert code == 0, out + err
    lines = [line.rstrip() for line in out.rstrip("\n").split("\n")]
    assert lines[0] == "keyrun doctor: bot/dev"
    assert lines[-1] == "ok: 0 failing, 3 warnings, 0 unknown"
    body = [line for line in lines[1:-1] if line]
    assert all(len(line) <= 80 for line in body), body
    # every line is a check (status, id, text) or the text's own continuation
    statuses = ("pass ", "warn ", "fail ", "unknown ")
    assert all(line.startswith(statuses) or line.startswith(" " * 29) for line in body), body
    assert body[body.index(next(b for b in body if b.startswith("warn    file-permissions")))
                + 1].startswith(" " * 29)
    assert_no_leak(CANARY, out, err)


def test_doctor_plain_output_is_one_line_per_check(project: Path, tmp_path: Path) -> None:
    done = keyrun(["doctor"], cwd=project, env=clean_env(tmp_path))
    lines = done.stdout.splitlines()
    assert lines[3] == ("warn    missing-keys         the one required key resolves; optional "
                        "and missing: PINECONE_API_KEY")
    assert lines[4] == (" " * 29 + "fix: keyrun set PINECONE_API_KEY -e dev if the command "
                        "needs it; run goes on without optional keys")


def test_list_at_80_columns_keeps_every_location_whole(project: Path, tmp_path: Path) -> None:
    write(project / LONG, "OPENAI_API_KEY=sk-team-0123456789abcdef\n")
    config = project / "keyrun.toml"
    write(config, config.read_text().replace("OPENAI_API_KEY = {}",
                                             'OPENAI_API_KEY = {}\nTEAM_TOKEN = { name = '
                                             '"OPENAI_API_KEY", source = "team" }'))
    code, out, err = keyrun_on_terminal(["list"], cwd=project,
                                        env=clean_env(tmp_path, NO_COLOR="1"))
    assert code == 0, err
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip()
             for line in out.rstrip("\n").split("\n")]
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[1].split() == ["KEY", "SOURCE", "LOCATION", "STATUS", "PREVIEW", "AGE"]
    start = lines[1].index("LOCATION")
    team = next(i for i, line in enumerate(lines) if line.startswith("TEAM_TOKEN"))
    cell = [line[start:].split()[0] for line in lines[team:]
            if line[start:].strip() and (line is lines[team] or not line[:start].strip())]
    assert "".join(cell) == f"{LONG}#OPENAI_API_KEY"  # whole, broken after / and #
    assert cell[0] == "config/team-shared-secrets/"
    assert_no_leak(CANARY, out, err)


def test_doctor_json_with_an_invalid_config(project: Path, tmp_path: Path) -> None:
    config = project / "keyrun.toml"
    write(config, "bogus = 1\n" + config.read_text())
    done = keyrun(["doctor", "--json"], cwd=project, env=clean_env(tmp_path))
    assert done.returncode == 125
    error = f"{config}:1: bogus: unknown key 'bogus'"
    assert json.loads(done.stdout) == {
        "ok": False, "env": None, "project": None,
        "checks": [{"id": "config", "status": "fail", "message": error,
                    "fix": "valid keys here: project, default_env, keys, sources, env, scan, "
                           "access_log",
                    "keys": []}]}
    assert done.stderr.startswith(f"keyrun: error: {error}\n")
    write(config, config.read_text().removeprefix("bogus = 1\n"))
    unknown = keyrun(["doctor", "--json", "-e", "prod"], cwd=project, env=clean_env(tmp_path))
    assert unknown.returncode == 125
    assert json.loads(unknown.stdout)["checks"][0]["message"] == (
        f"{config}: unknown environment 'prod'")


PLACEHOLDERS = {
    "DATABASE_URL": "postgresql://user:password@localhost/mydb",
    "REDIS_URL": "redis://localhost:6379/0",
    "MONGO_URL": "mongodb://admin:changeme@127.0.0.1:27017/app",
    "OPENAI_API_KEY": "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "ANTHROPIC_API_KEY": "<your-anthropic-key>",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "SESSION_SECRET": "changeme",
    "PINECONE_API_KEY": "${PINECONE_API_KEY}",
    "SENTRY_DSN": "https://examplePublicKey@o0.ingest.sentry.io/0",
}


def test_example_placeholders_judged_by_shape(tmp_path: Path) -> None:
    from keyrun.placeholders import is_placeholder_value

    assert all(is_placeholder_value(value) for value in PLACEHOLDERS.values())
    real = "postgresql://app:" + "Xq7vR2pL9sKw4tB8" + "@db.internal/app"
    random_key = "Zk3" + "qP8vLm2TxR7wNb5YcJ4hGd9sFa6"  # a format no scan rule knows
    assert not is_placeholder_value(real)
    root = dotenv_project(tmp_path / "bot", {"OPENAI_API_KEY": CANARY})
    example = "".join(f"{name}={value}\n" for name, value in PLACEHOLDERS.items())
    write(root / ".env.example", example)
    env = clean_env(tmp_path)
    done = keyrun(["doctor", "--json"], cwd=root, env=env)
    found = {c["id"]: c for c in json.loads(done.stdout)["checks"]}["example-placeholders"]
    assert (found["status"], found["message"]) == (
        "pass", f".env.example holds placeholders only ({len(PLACEHOLDERS)} names)")
    scanned = keyrun(["scan", "--format", "json", ".env.example"], cwd=root, env=env)
    assert json.loads(scanned.stdout) == {"findings": []}  # scan agrees
    write(root / ".env.example", example + f"DB_URL={real}\nTOOL_KEY={random_key}\n")
    leaked = keyrun(["doctor", "--json"], cwd=root, env=env)
    found = {c["id"]: c for c in json.loads(leaked.stdout)["checks"]}["example-placeholders"]
    assert (found["status"], found["keys"]) == ("fail", ["DB_URL", "TOOL_KEY"])
    assert_no_leak(CANARY, done.stdout, leaked.stdout, scanned.stdout)
    for value in (real, random_key):
        assert_no_leak(value, leaked.stdout, leaked.stderr)


def _plain(out: str) -> list[str]:
    return [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in out.rstrip("\n").split("\n")]


def _vault_like(tmp_path: Path) -> Path:
    """Long keys and long locations, as a team's Vault paths are: dotenv files deep in a
    tree stand in for them (list shows the same LOCATION column)."""
    deep = "customer-support-assistant-platform/production-eu-west/services/backend"
    keys = {"OPENAI_API_KEY": CANARY, "AZURE_OPENAI_EMBEDDING_DEPLOYMENT": "text-embed-3-large"}
    root = dotenv_project(tmp_path / "bot", {}, f'[sources.deep]\ntype = "dotenv"\n'
                                                f'path = "{deep}/secrets.env"\n')
    config = root / "keyrun.toml"
    write(config, config.read_text()
          .replace("[keys]\n", "[keys]\n" + "".join(f"{k} = {{}}\n" for k in keys)
                   + "PINECONE_API_KEY = { optional = true }\n")
          .replace('sources = ["local"]', 'sources = ["deep"]'))
    write(root / deep / "secrets.env", "".join(f"{k}={v}\n" for k, v in keys.items()))
    return root


@pytest.mark.parametrize("columns", [80, 60])
def test_list_fits_narrow_terminals_with_long_keys_and_locations(
        tmp_path: Path, columns: int) -> None:
    root = _vault_like(tmp_path)
    code, out, err = keyrun_on_terminal(["list"], cwd=root, columns=columns,
                                        env=clean_env(tmp_path, NO_COLOR="1"))
    assert code == 0, err
    lines = _plain(out)
    body = lines[lines.index(next(line for line in lines if line.startswith("KEY "))):]
    assert all(len(line) <= columns for line in lines), lines
    header = body[0].split()
    assert header[:5] == ["KEY", "SOURCE", "LOCATION", "STATUS", "PREVIEW"], body  # whole
    starts = [body[0].index(name) for name in header] + [columns]
    cells: dict[str, list[str]] = {name: [] for name in header}
    rows: list[dict[str, str]] = []
    for line in body[1:]:
        if not line.strip():
            break
        if line[starts[1]:starts[2]].strip():  # a SOURCE: a new row
            rows.append({})
        for name, start, end in zip(header, starts, starts[1:], strict=False):
            piece = line[start:end].strip()
            rows[-1][name] = rows[-1].get(name, "") + piece
            cells[name].append(piece)
    assert [row["KEY"] for row in rows] == [
        "OPENAI_API_KEY", "AZURE_OPENAI_EMBEDDING_DEPLOYMENT", "PINECONE_API_KEY"]
    assert [row["STATUS"] for row in rows] == ["ok", "ok", "optional"]
    assert rows[0]["LOCATION"].startswith("customer-support-assistant-platform/production-eu-")
    assert max(map(len, cells["LOCATION"])) >= 16, body  # room, not 3-letter fragments
    assert not any("…" in cell for name in ("KEY", "LOCATION", "STATUS")
                   for cell in cells[name]), body  # broken where needed, never cut short
    assert_no_leak(CANARY, out, err)


def test_terminal_tables_never_read_text_as_markup(tmp_path: Path) -> None:
    """A path holding `[bold]` or `[/i]` is shown as written: rich markup would swallow the
    first and crash on the second."""
    root = dotenv_project(tmp_path / "bot", {"OPENAI_API_KEY": CANARY},
                          '[sources.odd]\ntype = "dotenv"\npath = "a[/i]/[bold]b.env"\n')
    config = root / "keyrun.toml"
    write(config, config.read_text().replace('sources = ["local"]', 'sources = ["odd", "local"]'))
    write(root / "a[" / "i]" / "[bold]b.env", f"OPENAI_API_KEY={CANARY}\n")
    env = clean_env(tmp_path, NO_COLOR="1")
    for command in (["list"], ["doctor"]):
        code, out, err = keyrun_on_terminal(command, cwd=root, columns=200, env=env)
        assert code in (0, 1), out + err
        assert "internal error" not in out + err
        assert "a[/i]/[bold]b.env" in "".join(_plain(out)).replace(" ", ""), out
        assert_no_leak(CANARY, out, err)


def test_wrap_path_breaks_a_long_piece_after_dashes() -> None:
    from keyrun.cli.render import wrap_path

    assert wrap_path("secret/customer-support-assistant-platform/dev#KEY", 20).split("\n") == [
        "secret/customer-", "support-assistant-", "platform/dev#KEY"]
    assert wrap_path("abcdefghij", 4).split("\n") == ["abcd", "efgh", "ij"]
    assert wrap_path("ANTHROPIC_API_KEY", 10, "_").split("\n") == ["ANTHROPIC_", "API_KEY"]
