"""The argv guard (SPEC §5 "Argv guard", issue 13): a value counts as present only if an
argument is, or contains, the whole value or one of its encodings, split across adjacent
arguments too; short and dictionary-like values and paths never trigger it; generated-looking
runs inside URLs do."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest

from keyrun.environ import secrets_in_argv
from tests.helpers import CANARY, assert_no_leak, clean_env, dotenv_project, keyrun

WEBHOOK = "https://hooks.slack.com/services/T0A1B2/B0E4F5/aZ3kP9qW2xR7tY5u"
DATABASE_URL = "postgres://app:Xy7kP2q9Lw@db.internal:5432/app"
PASSPHRASE = "correct horse battery staple"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


REFUSED = [
    ("OPENAI_API_KEY", CANARY, ["curl", "-H", f"Authorization: Bearer {CANARY}"]),
    ("OPENAI_API_KEY", CANARY, ["tool", CANARY]),
    ("OPENAI_API_KEY", CANARY, ["tool", f"--key={CANARY[:12]}", CANARY[12:]]),
    ("OPENAI_API_KEY", CANARY, ["tool", CANARY.upper()]),
    ("OPENAI_API_KEY", CANARY, ["tool", CANARY.encode().hex()]),
    ("OPENAI_API_KEY", CANARY, ["tool", CANARY.encode().hex().upper()]),
    ("OPENAI_API_KEY", CANARY, ["tool", b64(CANARY)]),
    ("OPENAI_API_KEY", CANARY, ["tool", "--data", "x" + b64("ab" + CANARY)]),
    ("OPENAI_API_KEY", CANARY,
     ["tool", "--token=" + base64.urlsafe_b64encode(b"\xfb\xff" + CANARY.encode()).decode()]),
    ("OPENAI_API_KEY", CANARY, ["curl", "-H", f"Authorization: Basic {b64('bob:' + CANARY)}"]),
    ("OPENAI_API_KEY", CANARY, ["curl", "-H", f"Authorization: Basic {b64(CANARY + ':')}"]),
    ("SIGNING_SECRET", "p@ss/w0rd+x&y", ["curl", "https://x.example/?s=" + quote("p@ss/w0rd+x&y")]),
    ("SLACK_WEBHOOK_URL", WEBHOOK, ["curl", "-d", "{}", WEBHOOK]),
    ("DATABASE_URL", DATABASE_URL, ["psql", DATABASE_URL]),
    ("ADMIN_PW", "correcthorsebatterystaple", ["login", "correcthorsebatterystaple"]),
    ("PASSPHRASE", PASSPHRASE, ["unlock", *PASSPHRASE.split()]),
    ("SESSION", "a1b2c3d4e5f6g7h8", ["tool", "--session", "a1b2c3d4e5f6g7h8"]),
]

ALLOWED = [
    ("DB_PASSWORD", "postgres", ["psql", "-U", "postgres"]),
    ("AUTH_PROVIDER", "github", ["gh", "auth", "login", "--hostname", "github.com"]),
    ("ADMIN_PASSWORD", "Admin2024", ["echo", "Admin2024"]),
    ("API_KEY", "ab12c", ["tool", "ab12c"]),  # shorter than masking's 6 characters
    ("SSH_PRIVATE_KEY", "/home/me/.ssh/id_ed25519", ["ssh", "-i", "/home/me/.ssh/id_ed25519"]),
    ("TLS_KEY_FILE", "~/.certs/k3y-9f8e7d6c5b4a.pem", ["curl", "--key", "~/.certs/k3y-9f8e7d6c5b4a.pem"]),
    ("GOOGLE_CREDENTIALS", "./sa-4f3e2d1c0b9a.json", ["gcloud", "--key-file", "./sa-4f3e2d1c0b9a.json"]),
    ("TOKEN_URL", "https://oauth2.googleapis.com/token", ["curl", "https://oauth2.googleapis.com/token"]),
    ("REDIS_URL", "redis://localhost:6379/0", ["redis-cli", "-u", "redis://localhost:6379/0"]),
    ("REDIS_URL", "redis://:password@cache:6379", ["redis-cli", "-u", "redis://:password@cache:6379"]),
    ("API_BASE", "https://a1b2c3d4e5f6g7.execute-api.us-east-1.amazonaws.com/prod",
     ["curl", "https://a1b2c3d4e5f6g7.execute-api.us-east-1.amazonaws.com/prod/items/3/sub/4"]),
    ("OPENAI_MODEL", "gpt-4o-2024-08-06", ["tool", "--model", "gpt-4o-2024-08-06"]),
    ("DB_HOST", "db-prod-01.internal.example.com", ["psql", "-h", "db-prod-01.internal.example.com"]),
    ("APP_ENV", "production", ["deploy", "production-notes.md"]),
    ("OPENAI_API_KEY", CANARY, ["tool", CANARY[:-1]]),  # not the whole value
    ("OPENAI_API_KEY", CANARY, ["tool", CANARY[:10], "x", CANARY[10:]]),  # not adjacent
    ("OPENAI_API_KEY", CANARY, ["tool", b64(CANARY)[:-8]]),  # not the whole encoding
]


@pytest.mark.parametrize(("name", "value", "argv"), REFUSED)
def test_refused(name: str, value: str, argv: list[str]) -> None:
    assert secrets_in_argv(argv, {name: value, "OTHER": "unrelated-value-123"}) == [name]


@pytest.mark.parametrize(("name", "value", "argv"), ALLOWED)
def test_allowed(name: str, value: str, argv: list[str]) -> None:
    assert secrets_in_argv(argv, {name: value}) == []


def test_through_the_command_line(tmp_path: Path) -> None:
    project = dotenv_project(tmp_path / "proj", {"OPENAI_API_KEY": CANARY,
                                                 "DB_PASSWORD": "postgres"})
    env = clean_env(tmp_path)
    basic = f"Authorization: Basic {b64('bob:' + CANARY)}"
    refused = keyrun(["--", "echo", "-H", basic], cwd=project, env=env)
    assert refused.returncode == 125
    assert "the value of OPENAI_API_KEY appears in the command's arguments" in refused.stderr
    assert_no_leak(CANARY, refused.stdout, refused.stderr)
    assert b64("bob:" + CANARY) not in refused.stderr
    allowed = keyrun(["--", "echo", "psql", "-U", "postgres"], cwd=project, env=env)
    assert (allowed.returncode, allowed.stdout) == (0, "psql -U postgres\n")
