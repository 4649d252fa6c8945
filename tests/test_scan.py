"""keyrun scan: rules, allowlists, profile values, walks (tree, index, history), reports.

Every key below is built at run time by concatenating a documented prefix with random
characters, so this file holds no realistic key literal (push protection, and keyrun's own
scanner, would rightly flag one).
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keyrun.scan import (
    Finding,
    ScanError,
    render_json,
    render_sarif,
    render_text,
    scan,
    scan_bytes,
)
from keyrun.scan.engine import Text, find_hits
from keyrun.scan.rules import builtin_rules, ruleset
from tests.helpers import git

UPPER, LOWER, DIGITS = string.ascii_uppercase, string.ascii_lowercase, string.digits
ALNUM = UPPER + LOWER + DIGITS
URLSAFE = ALNUM + "_-"
BASE64 = ALNUM + "+/"
HEX = "0123456789abcdef"


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# rule id -> (text holding one key, the key as it appears in the text, the preview's start)
Sample = tuple[str, str, str]


def _assigned(name: str, secret: str, head: str) -> Sample:
    return f'{name} = "{secret}"\n', secret, head


def _openai(rng: random.Random) -> Sample:
    kind = rng.choice(["proj", "svcacct", "admin"])
    body = rand(rng, 74, URLSAFE) + "T3Blbk" + "FJ" + rand(rng, 74, URLSAFE)
    return _assigned("OPENAI_API_KEY", f"sk-{kind}-" + body, f"sk-{kind}-…")


def _openai_legacy(rng: random.Random) -> Sample:
    secret = "sk-" + rand(rng, 20) + "T3Blbk" + "FJ" + rand(rng, 20)
    return f"export OPENAI_API_KEY={secret}\n", secret, "sk-…"


def _anthropic(rng: random.Random) -> Sample:
    return _assigned("ANTHROPIC_API_KEY", "sk-ant-" + "api03-" + rand(rng, 93, URLSAFE) + "AA",
                     "sk-ant-api03-…")


def _anthropic_admin(rng: random.Random) -> Sample:
    return _assigned("key", "sk-ant-" + "admin01-" + rand(rng, 93, URLSAFE) + "AA",
                     "sk-ant-admin01-…")


def _openrouter(rng: random.Random) -> Sample:
    return _assigned("OPENROUTER_API_KEY", "sk-or-" + "v1-" + rand(rng, 64, HEX), "sk-or-v1-…")


def _google(rng: random.Random) -> Sample:
    secret = "AI" + "za" + "Sy" + rand(rng, 33, URLSAFE)
    return f"https://generativelanguage.googleapis.com/v1/models?key={secret}\n", secret, "AIza…"


def _huggingface(rng: random.Random) -> Sample:
    return _assigned("HF_TOKEN", "hf" + "_" + rand(rng, 34, UPPER + LOWER), "hf_…")


def _groq(rng: random.Random) -> Sample:
    return _assigned("GROQ_API_KEY", "gsk" + "_" + rand(rng, 52), "gsk_…")


def _replicate(rng: random.Random) -> Sample:
    return _assigned("REPLICATE_API_TOKEN", "r8" + "_" + rand(rng, 37), "r8_…")


def _perplexity(rng: random.Random) -> Sample:
    return _assigned("PERPLEXITY_API_KEY", "pplx" + "-" + rand(rng, 48), "pplx-…")


def _xai(rng: random.Random) -> Sample:
    return _assigned("XAI_API_KEY", "xai" + "-" + rand(rng, 80), "xai-…")


def _pinecone(rng: random.Random) -> Sample:
    return _assigned("PINECONE_API_KEY", "pcsk" + "_" + rand(rng, 6) + "_" + rand(rng, 63),
                     "pcsk_…")


def _langsmith(rng: random.Random) -> Sample:
    kind = rng.choice(["pt", "sk"])
    secret = "lsv2" + f"_{kind}_" + rand(rng, 32, HEX) + "_" + rand(rng, 10, HEX)
    return _assigned("LANGSMITH_API_KEY", secret, f"lsv2_{kind}_…")


def _aws_id(rng: random.Random) -> Sample:
    secret = rng.choice(["AK", "AS"]) + "IA" + rand(rng, 16, UPPER + "234567")
    return f"[default]\naws_access_key_id = {secret}\n", secret, secret[:4] + "…"


def _aws_secret(rng: random.Random) -> Sample:
    secret = rand(rng, 40, BASE64)
    return f"AWS_SECRET_ACCESS_KEY={secret}\n", secret, "…"


def _github(rng: random.Random) -> Sample:
    head = "gh" + rng.choice("pousr") + "_"
    return _assigned("token", head + rand(rng, 36), head + "…")


def _github_pat(rng: random.Random) -> Sample:
    return _assigned("GH_TOKEN", "github" + "_pat_" + rand(rng, 22) + "_" + rand(rng, 59),
                     "github_pat_…")


def _slack(rng: random.Random) -> Sample:
    head = "xox" + rng.choice("bp") + "-"
    secret = head + rand(rng, 12, DIGITS) + "-" + rand(rng, 13, DIGITS) + "-" + rand(rng, 24)
    return _assigned("SLACK_BOT_TOKEN", secret, head + "…")


def _slack_app(rng: random.Random) -> Sample:
    secret = ("xa" + "pp-1-" + rand(rng, 11, UPPER + DIGITS) + "-" + rand(rng, 13, DIGITS) + "-"
              + rand(rng, 64, HEX))
    return _assigned("SLACK_APP_TOKEN", secret, "xapp-…")


def _slack_webhook(rng: random.Random) -> Sample:
    path = "T" + rand(rng, 8, UPPER + DIGITS) + "/B" + rand(rng, 8, UPPER + DIGITS) + "/"
    secret = "hooks.slack" + ".com/services/" + path + rand(rng, 24)
    return f'url = "https://{secret}"\n', secret, "hooks.slack.com/…"


def _stripe(rng: random.Random) -> Sample:
    head = rng.choice(["sk", "rk"]) + "_live_"
    return _assigned("STRIPE_SECRET_KEY", head + rand(rng, 99), head + "…")


def _doppler(rng: random.Random) -> Sample:
    kind = rng.choice(["st", "pt", "sa", "ct"])
    config = "dev." if kind == "st" else ""
    return _assigned("DOPPLER_TOKEN", f"dp.{kind}." + config + rand(rng, 43), f"dp.{kind}.…")


def _vault(rng: random.Random) -> Sample:
    head = rng.choice(["hvs", "hvb"]) + "."
    return _assigned("VAULT_TOKEN", head + "CAES" + rand(rng, 90, URLSAFE), head + "…")


def _gcp(rng: random.Random) -> Sample:
    body = "MIIEv" + rand(rng, 64, BASE64)
    document = json.dumps({
        "type": "service_account", "project_id": "acme-prod",
        "private_key_id": rand(rng, 40, HEX),
        "private_key": "-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----\n",
        "client_email": "bot@acme-prod.iam.gserviceaccount.com"}, indent=2)
    return document + "\n", body, "-----BEGIN PRIVATE KEY-----…"


def _pem(rng: random.Random) -> Sample:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    body = rand(rng, 64, BASE64)
    text = (f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n{rand(rng, 64, BASE64)}\n"
            f"-----END {kind}PRIVATE KEY-----\n")
    return text, body, f"-----BEGIN {kind}PRIVATE KEY-----…"


def _mistral(rng: random.Random) -> Sample:
    secret = rand(rng, 32)
    return rng.choice([f"MISTRAL_API_KEY={secret}\n",
                       f'client = Mistral(api_key="{secret}")\n']), secret, "…"


def _cohere(rng: random.Random) -> Sample:
    secret = rand(rng, 40)
    return rng.choice([f"CO_API_KEY={secret}\n", f'co = cohere.Client("{secret}")\n',
                       f"cohere_api_key: '{secret}'\n"]), secret, "…"


MAKERS: dict[str, Callable[[random.Random], Sample]] = {
    "openai-api-key": _openai,
    "openai-legacy-api-key": _openai_legacy,
    "anthropic-api-key": _anthropic,
    "anthropic-admin-key": _anthropic_admin,
    "openrouter-api-key": _openrouter,
    "google-api-key": _google,
    "huggingface-token": _huggingface,
    "groq-api-key": _groq,
    "replicate-api-token": _replicate,
    "perplexity-api-key": _perplexity,
    "xai-api-key": _xai,
    "pinecone-api-key": _pinecone,
    "langsmith-api-key": _langsmith,
    "aws-access-key-id": _aws_id,
    "aws-secret-access-key": _aws_secret,
    "github-token": _github,
    "github-fine-grained-pat": _github_pat,
    "slack-token": _slack,
    "slack-app-token": _slack_app,
    "slack-webhook-url": _slack_webhook,
    "stripe-secret-key": _stripe,
    "doppler-token": _doppler,
    "vault-token": _vault,
    "gcp-service-account-key": _gcp,
    "private-key": _pem,
    "mistral-api-key": _mistral,
    "cohere-api-key": _cohere,
}


def test_generated_positives_name_real_rules() -> None:
    assert set(MAKERS) <= {rule.id for rule in builtin_rules()}


@pytest.mark.parametrize("rule", sorted(MAKERS))
def test_generated_positives(rule: str) -> None:
    rng = random.Random(rule)
    for _ in range(50):
        text, secret, head = MAKERS[rule](rng)
        findings = scan_bytes(("# config\n" + text).encode(), "config.txt")
        assert [(f.rule, f.path) for f in findings] == [(rule, "config.txt")], text
        (finding,) = findings
        assert secret not in finding.preview
        if head.endswith("-----…"):  # a private key's preview is its header
            assert finding.preview == head
            continue
        assert finding.line == 2 + text[:text.index(secret)].count("\n")
        assert finding.preview.startswith(head.rstrip("…")[:len(secret) // 4])
        assert len(finding.preview.replace("…", "")) <= len(secret) // 4


def test_aws_secret_key_beside_its_access_key_id() -> None:
    rng = random.Random(7)
    key_id = "AK" + "IA" + rand(rng, 16, UPPER + "234567")
    secret = rand(rng, 20, BASE64) + "Zz9" + rand(rng, 17, BASE64)
    text = f'boto3.client("s3", "{key_id}", "{secret}")\n'
    findings = scan_bytes(text.encode())
    assert [(f.rule, f.line) for f in findings] == [
        ("aws-access-key-id", 1), ("aws-secret-access-key-near-id", 1)]
    digest = rand(rng, 40, HEX)
    findings = scan_bytes(f"{key_id}\nsha = {digest}\n".encode())
    assert [f.rule for f in findings] == ["aws-access-key-id"]


def test_pem_and_gcp_findings_are_on_the_begin_line() -> None:
    rng = random.Random(3)
    text, _, _ = _pem(rng)
    assert [(f.line, f.column) for f in scan_bytes(b"a\nb\n  " + text.encode())] == [(3, 3)]
    document, _, _ = _gcp(rng)
    (finding,) = scan_bytes(document.encode())
    assert finding.rule == "gcp-service-account-key"
    assert finding.line == document[:document.index('"private_key"')].count("\n") + 1


TRAPS = [
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "request_id = 123e4567-e89b-12d3-a456-426614174000",
    '<div class="sk-spinner sk-spinner-wave"></div>',
    "from huggingface_hub import hf_hub_download, hf_hub_url",
    "hvs.some_long_attribute_name_on_an_object = 1",
    "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "OPENAI_API_KEY=${OPENAI_API_KEY}",
    "api_key: {{ openai_api_key }}",
    "OPENAI_API_KEY=<your-key>",
    "ANTHROPIC_API_KEY=sk-ant-api03-...",
    'if line.startswith("-----BEGIN PRIVATE KEY-----"):',
    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
    "MISTRAL_API_KEY=your_mistral_api_key_here",
    'mistral_model = "mistral-large-latest"',
    "mistral: mistralaiclientlibrarypythonv1",
    "STRIPE_KEY=sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "pk_live_" + "TYooMQauvdEDq54NiTphI7jx",
    "SLACK_BOT_TOKEN=xoxb-your-token-here",
]


def _trap_lines() -> list[str]:
    rng = random.Random(11)
    return [
        *TRAPS,
        "sk-proj-" + "x" * 60,
        "AI" + "za" + "Sy" + "X" * 33,
        "ghp_" + "0" * 36,
        "sk-ant-api03-" + "x" * 95,
        "MISTRAL_API_KEY=" + "abcdefghijklmnopqrstuvwxyz123456",
        'COHERE_MODEL_SHA = "' + rand(rng, 40, HEX) + '"',
        "risk-" + rand(rng, 48),
        "desk-" + rand(rng, 48),
        "img = 'data:image/png;base64,iVBORw0KGgo" + "AIza" + rand(rng, 35, BASE64) + "'",
        "blob = '" + rand(rng, 30, BASE64) + "AKIA" + rand(rng, 16, UPPER) + "'",
        "OPENAI_API_KEY=sk-proj-YOUR_KEY_HERE_" + "x" * 30,
        "password = hunter2",
    ]


def _private_key(kind: str, layout: str) -> str:
    """A real, unencrypted private key (``ssh-keygen -N ''`` writes the OpenSSH layout)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        key = rsa.generate_private_key(65537, 2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    formats = {"openssh": serialization.PrivateFormat.OpenSSH,
               "pkcs8": serialization.PrivateFormat.PKCS8}
    pem = key.private_bytes(serialization.Encoding.PEM, formats[layout],
                            serialization.NoEncryption()).decode()
    if layout == "pkcs8":
        return pem
    lines = pem.splitlines()  # cryptography wraps at 64 columns, ssh-keygen at 70
    body = "".join(lines[1:-1])
    return "\n".join([lines[0], *(body[i:i + 70] for i in range(0, len(body), 70)),
                      lines[-1]]) + "\n"


@pytest.mark.parametrize("layout", ["openssh", "pkcs8"])
@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_unencrypted_private_keys(kind: str, layout: str) -> None:
    """An unencrypted OpenSSH key's fixed header holds runs of ``A`` (zero bytes): not a
    placeholder."""
    text = _private_key(kind, layout)
    findings = scan_bytes(text.encode(), "id_key")
    header = text.splitlines()[0]
    assert [(f.line, f.rule, f.preview) for f in findings] == [
        (1, "private-key", header + "…")]


@pytest.mark.parametrize("body", ["A" * 70, "x" * 64, "MIIEv" + "x" * 59])
def test_private_key_placeholders(body: str) -> None:
    text = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    assert scan_bytes(text.encode()) == []


@pytest.mark.parametrize("text", _trap_lines())
def test_false_positive_traps(text: str) -> None:
    assert scan_bytes(text.encode()) == []


@pytest.mark.parametrize("placeholder", [
    "${OPENAI_API_KEY}", "{{ openai_key }}", "<your-key>", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "your-api-key-here", "changeme", "sk-proj-...", "sk-proj-" + "*" * 50,
    "sk-proj-" + "EXAMPLE" + "a1B2c3D4" * 6, "AKIAIOSFODNN7EXAMPLE",
])
def test_placeholder_allowlist(placeholder: str) -> None:
    text = f"OPENAI_API_KEY={placeholder}\nMISTRAL_API_KEY={placeholder}\n"
    assert scan_bytes(text.encode()) == []


def test_keyrun_allow_skips_only_its_own_line() -> None:
    rng = random.Random(5)
    first, second = _groq(rng)[1], _groq(rng)[1]
    text = f'a = "{first}"  # keyrun:allow\nb = "{second}"\n'
    findings = scan_bytes(text.encode())
    assert [(f.line, f.rule) for f in findings] == [(2, "groq-api-key")]


def test_profile_values_found_with_their_key_names() -> None:
    rng = random.Random(9)
    password = "pw-" + rand(rng, 20)
    openai = _openai(rng)[1]
    values = {"DB_PASSWORD": password, "OPENAI_API_KEY": openai, "PIN": "1234567",
              "SHORT_OK": "abcd1234"}
    text = (f"db = postgres://app:{password}@db/app\nkey = {openai}\n"
            "pin = 1234567\ncode = abcd1234\n")
    findings = scan_bytes(text.encode(), "app.cfg", values)
    assert [(f.line, f.rule, f.key) for f in findings] == [
        (1, "database-url-password", "DB_PASSWORD"),
        (2, "openai-api-key", "OPENAI_API_KEY"),
        (4, "profile-value", "SHORT_OK"),
    ]
    assert findings[0].preview == "…" + password[-4:]
    assert findings[2].preview == "ab…"
    output = render_text(findings) + render_json(findings) + render_sarif(findings)
    assert password not in output
    assert openai not in output
    assert "abcd1234" not in output


@pytest.mark.parametrize(("value", "preview"), [
    ("pw-" + "ßecrét-wörd-ünïcödé-näïvë", "pw-…äïvë"),
    ("éàü-" + "secret-value-ok", "éàü…"),
])
def test_a_non_ascii_value_is_previewed_by_characters(value: str, preview: str) -> None:
    findings = scan_bytes(f"note: {value}\n".encode(), "app.cfg", {"DB_PASSWORD": value})
    assert [f.preview for f in findings] == [preview]


def test_a_value_inside_a_longer_value_is_reported_once() -> None:
    values = {"LONG": "prefix-secretvalue-suffix", "INNER": "secretvalue"}
    findings = scan_bytes(b"x = prefix-secretvalue-suffix; y = secretvalue\n", values=values)
    assert [(f.column, f.key) for f in findings] == [(5, "LONG"), (36, "INNER")]


def _all_samples() -> tuple[str, list[str]]:
    rng = random.Random(13)
    texts, secrets = [], []
    for maker in MAKERS.values():
        for _ in range(3):
            text, secret, _ = maker(rng)
            texts.append(text)
            secrets.append(secret)
    return "".join(texts), secrets


def test_reports_never_hold_a_full_secret() -> None:
    text, secrets = _all_samples()
    findings = scan_bytes(text.encode(), "all.txt")
    assert len(findings) == len(secrets)
    for output in (render_text(findings), render_json(findings), render_sarif(findings)):
        for secret in secrets:
            assert secret not in output
            tail = secret[-len(secret) // 2:]
            assert tail[:-4] not in output


def test_text_report() -> None:
    findings = [Finding("src/app.py", 3, "groq-api-key", "gsk_…AbCd"),
                Finding("a.env", 1, "profile-value", "sk-…wxyz", key="OPENAI_API_KEY",
                        commit="0" * 40)]
    assert render_text(findings) == (
        "src/app.py:3 groq-api-key gsk_…AbCd\n"
        f"{'0' * 40}:a.env:1 profile-value sk-…wxyz [OPENAI_API_KEY]\n")
    assert render_text([]) == ""


def test_json_report_is_spec_shaped() -> None:
    findings = [Finding("a.env", 2, "profile-value", "sk-…wxyz", key="OPENAI_API_KEY",
                        column=5)]
    assert json.loads(render_json(findings)) == {"findings": [{
        "path": "a.env", "line": 2, "rule": "profile-value", "key": "OPENAI_API_KEY",
        "commit": None, "preview": "sk-…wxyz"}]}
    assert json.loads(render_json([])) == {"findings": []}


def test_sarif_report() -> None:
    findings = [Finding("dir with space/app.py", 3, "groq-api-key", "gsk_…AbCd", column=7),
                Finding("b.py", 1, "groq-api-key", "gsk_…EfGh", commit="a" * 40)]
    log = json.loads(render_sarif(findings))
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    assert run["tool"]["driver"]["name"] == "keyrun"
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == ["groq-api-key"]
    first, second = run["results"]
    assert first["ruleId"] == "groq-api-key"
    assert first["ruleIndex"] == 0
    assert first["level"] == "error"
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "dir%20with%20space/app.py"
    assert location["region"] == {"startLine": 3, "startColumn": 7}
    assert "gsk_…AbCd" in first["message"]["text"]
    assert second["properties"]["commit"] == "a" * 40
    assert first["partialFingerprints"] != second["partialFingerprints"]
    assert json.loads(render_sarif([]))["runs"][0]["results"] == []


def test_five_megabyte_minified_line_finishes_quickly() -> None:
    rng = random.Random(17)
    secret = _xai(rng)[1]
    chunk = "function(a,b){return a.map(function(c){return c+b})};var q='sk-';"
    half = (chunk * (2_500_000 // len(chunk))).encode()
    data = half + f'var k="{secret}";'.encode() + half + rand(rng, 200_000, BASE64).encode()
    assert b"\n" not in data
    assert len(data) > 5_000_000
    started = time.perf_counter()
    findings = scan_bytes(data, "app.min.js")
    elapsed = time.perf_counter() - started
    assert [(f.rule, f.line, f.column) for f in findings] == [("xai-api-key", 1, len(half) + 8)]
    assert elapsed < 3.0


def test_a_text_of_key_shaped_tokens_stops_at_its_budget() -> None:
    rng = random.Random(19)
    data = " ".join("AK" + "IA" + rand(rng, 16, UPPER) for _ in range(100_000)).encode()
    text = Text(data, budget=0.05)
    started = time.perf_counter()
    hits = find_hits(text, ruleset(), {})
    assert time.perf_counter() - started < 2.0
    assert text.stopped
    assert 0 < len(hits) < 100_000


def test_binary_data_is_not_scanned(tmp_path: Path) -> None:
    secret = _groq(random.Random(1))[1]
    (tmp_path / "blob.bin").write_bytes(b"\x89PNG\0\0" + secret.encode())
    (tmp_path / "text.txt").write_text(secret)
    result = scan([], root=tmp_path)
    assert [f.path for f in result.findings] == ["text.txt"]


# -- walks: work tree, index, history ---------------------------------------------------------


@pytest.fixture
def keys() -> list[str]:
    rng = random.Random(23)
    return [_groq(rng)[1] for _ in range(6)]


def _where(findings: list[Finding]) -> list[tuple[str, int]]:
    return [(f.path, f.line) for f in findings]


def test_tree_respects_gitignore(repo: Path, keys: list[str]) -> None:
    (repo / ".gitignore").write_text(".env\nbuild/\n")
    (repo / ".env").write_text(f"GROQ_API_KEY={keys[0]}\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.js").write_text(keys[1])
    (repo / "src").mkdir()
    (repo / "src" / "tracked.py").write_text(f"\n\nKEY = '{keys[2]}'\n")
    git(repo, "add", ".gitignore", "src/tracked.py")
    git(repo, "commit", "-q", "-m", "one")
    (repo / "untracked.txt").write_text(keys[3])
    result = scan([], root=repo)
    assert _where(result.findings) == [("src/tracked.py", 3), ("untracked.txt", 1)]
    assert _where(scan([Path("src")], root=repo).findings) == [("src/tracked.py", 3)]
    assert _where(scan([Path(".env")], root=repo).findings) == [(".env", 1)]
    sub = scan([], root=repo / "src")
    assert _where(sub.findings) == [("tracked.py", 3)]


def test_plain_directory_walk(tmp_path: Path, keys: list[str]) -> None:
    (tmp_path / ".gitignore").write_text(".env\n")
    (tmp_path / ".env").write_text(keys[0])
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "x.yaml").write_text(f"a: 1\nkey: {keys[1]}\n")
    (tmp_path / "deep" / ".git").mkdir()
    (tmp_path / "deep" / ".git" / "config").write_text(keys[2])
    result = scan([], root=tmp_path)
    assert _where(result.findings) == [(".env", 1), ("deep/er/x.yaml", 2)]
    assert result.scanned == 3


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="nope does not exist"):
        scan([Path("nope")], root=tmp_path)


def test_staged_reads_the_index_not_the_work_tree(repo: Path, keys: list[str]) -> None:
    (repo / "staged.py").write_text(f"KEY = '{keys[0]}'\n")
    git(repo, "add", "staged.py")
    (repo / "staged.py").write_text("KEY = os.environ['GROQ_API_KEY']\n")
    (repo / "clean.py").write_text("x = 1\n")
    git(repo, "add", "clean.py")
    (repo / "clean.py").write_text(f"x = 1\nKEY = '{keys[1]}'\n")
    (repo / "unstaged.py").write_text(keys[2])
    assert _where(scan([], root=repo, mode="staged").findings) == [("staged.py", 1)]
    assert _where(scan([], root=repo).findings) == [("clean.py", 2), ("unstaged.py", 1)]


def test_staged_covers_what_the_next_commit_changes(repo: Path, keys: list[str]) -> None:
    (repo / "old.py").write_text(f"KEY = '{keys[0]}'\n")
    (repo / "link").symlink_to("old.py")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    assert scan([], root=repo, mode="staged").findings == []
    (repo / "sub").mkdir()
    (repo / "sub" / "new.py").write_text(f"\nKEY = '{keys[1]}'\n")
    (repo / "sub" / "bin.dat").write_bytes(b"\0" + keys[2].encode())
    git(repo, "add", "sub")
    assert _where(scan([], root=repo, mode="staged").findings) == [("sub/new.py", 2)]
    assert _where(scan([], root=repo / "sub", mode="staged").findings) == [("new.py", 2)]
    assert _where(scan([Path("old.py")], root=repo, mode="staged").findings) == []


def test_history_reports_the_commit_that_added_a_key(repo: Path, keys: list[str]) -> None:
    (repo / "a.py").write_text("one\ntwo\nthree\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "start")
    (repo / "a.py").write_text(f"one\nKEY = '{keys[0]}'\ntwo\nthree\nB = '{keys[1]}'\n")
    git(repo, "commit", "-q", "-am", "add keys")
    added = git(repo, "rev-parse", "HEAD")
    (repo / "a.py").write_text("one\ntwo\nthree\n")
    git(repo, "commit", "-q", "-am", "remove keys")
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "dir with space").mkdir()
    (repo / "dir with space" / "é.txt").write_text(f"{keys[2]}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "side branch")
    side = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    assert scan([], root=repo).findings == []
    history = scan([], root=repo, mode="history").findings
    assert sorted((f.commit, f.path, f.line) for f in history) == sorted([
        (added, "a.py", 2), (added, "a.py", 5), (side, "dir with space/é.txt", 1)])
    text = render_text(history)
    assert f"{added}:a.py:2 groq-api-key gsk_…" in text
    assert all(key not in text for key in keys)


def test_history_with_paths_and_empty_repositories(repo: Path, keys: list[str]) -> None:
    assert scan([], root=repo, mode="history").findings == []
    (repo / "a.txt").write_text(keys[0])
    (repo / "b.txt").write_text(keys[1])
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    assert _where(scan([Path("b.txt")], root=repo, mode="history").findings) == [("b.txt", 1)]


def test_staged_and_history_need_a_repository(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="--staged needs a git repository"):
        scan([], root=tmp_path, mode="staged")
    with pytest.raises(ScanError, match="--history needs a git repository"):
        scan([], root=tmp_path, mode="history")


def test_a_file_name_that_is_not_utf8(tmp_path: Path, keys: list[str]) -> None:
    (tmp_path / os.fsdecode(b"caf\xe9.env")).write_text(keys[0])
    findings = scan([], root=tmp_path).findings
    assert [f.path for f in findings] == ["caf\ufffd.env"]
    assert json.loads(render_json(findings))["findings"][0]["path"] == "caf\ufffd.env"
    render_text(findings).encode("utf-8")
    render_sarif(findings).encode("utf-8")


def test_crlf_lines_and_columns(keys: list[str]) -> None:
    text = f"a = 1\r\nb = 'é{keys[0]}'\r\n"
    assert [(f.line, f.column) for f in scan_bytes(text.encode())] == [(2, 7)]


def test_allow_comment_in_history(repo: Path, keys: list[str]) -> None:
    (repo / "a.py").write_text(f"A = '{keys[0]}'  # keyrun:allow\nB = '{keys[1]}'\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "one")
    assert _where(scan([], root=repo, mode="history").findings) == [("a.py", 2)]


# The command line ---------------------------------------------------------------------

def _cli(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    from tests.helpers import clean_env, keyrun

    return keyrun(["scan", *args], cwd=cwd, env=clean_env(tmp_path))


def test_cli_exit_statuses_formats_and_no_full_secret(tmp_path: Path) -> None:
    from tests.helpers import write

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    clean = _cli([], repo, tmp_path)
    assert (clean.returncode, clean.stdout) == (0, "")
    secret = "sk-proj-" + "Q7vR2mX9kL4pT8wZ1nB6cF3hJ5sD0gYa" + "Ue2Wq" + "T3Blbk" + "FJ" + "r8Kd0Lz"
    write(repo / "config.py", f'OPENAI_KEY = "{secret}"\nSAFE = "sk-proj-xxxx"  # keyrun:allow\n')
    found = _cli([], repo, tmp_path)
    assert found.returncode == 1
    assert found.stdout.startswith("config.py:1 openai-api-key sk-proj-…")
    data = json.loads(_cli(["--format", "json"], repo, tmp_path).stdout)
    assert [(f["path"], f["line"]) for f in data["findings"]] == [("config.py", 1)]
    sarif = json.loads(_cli(["--format", "sarif"], repo, tmp_path).stdout)
    assert sarif["version"] == "2.1.0"
    for output in (found.stdout, found.stderr, json.dumps(data), json.dumps(sarif)):
        assert secret not in output
    staged = _cli(["--staged"], repo, tmp_path)
    assert staged.returncode == 0  # nothing staged yet
    subprocess.run(["git", "add", "config.py"], cwd=repo, check=True)
    assert _cli(["--staged"], repo, tmp_path).returncode == 1
    assert _cli(["--staged", "--history"], repo, tmp_path).returncode == 2
    assert _cli(["--format", "xml"], repo, tmp_path).returncode == 2
    assert _cli(["no-such-path"], repo, tmp_path).returncode == 125


def test_cli_finds_the_profiles_own_values(tmp_path: Path) -> None:
    from tests.helpers import write

    root = tmp_path / "plain"
    value = "plain-" + "value-" + "7c1e9a20b4"
    write(root / "keyrun.toml", '[keys]\nTOKEN = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    write(root / ".env", f"TOKEN={value}\n")
    write(root / "notes.txt", f"debug: token was {value}\n")
    done = _cli([], root, tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"notes.txt:1 profile-value {done.stdout.split()[2]} [TOKEN]"]
    assert ".env" not in done.stdout  # outside git, the source's own file is not a leak
    assert value not in done.stdout + done.stderr


def test_staged_fetches_the_profile_once_and_only_with_text_to_search(repo: Path,
                                                                       keys: list[str]) -> None:
    calls: list[int] = []

    def values() -> dict[str, str]:
        calls.append(1)
        return {"TOKEN": "local-" + "value-" + "8d2f61"}

    assert scan([], root=repo, mode="staged", values=values).scanned == 0
    (repo / "logo.png").write_bytes(b"\x89PNG\0\0\0" + keys[0].encode())
    git(repo, "add", "logo.png")
    assert scan([], root=repo, mode="staged", values=values).findings == []
    assert calls == []
    (repo / "a.py").write_text("token = 'local-value-8d2f61'\n")
    (repo / "b.py").write_text(f"key = '{keys[1]}'\n")
    git(repo, "add", "a.py", "b.py")
    result = scan([], root=repo, mode="staged", values=values)
    assert [(f.path, f.key) for f in result.findings] == [("a.py", "TOKEN"), ("b.py", None)]
    assert calls == [1]


def test_cli_staged_touches_no_remote_source_until_something_is_staged(tmp_path: Path) -> None:
    from tests.doppler_server import FakeDoppler
    from tests.helpers import clean_env, keyrun, write

    token = "dp.st.dev." + "fake0123456789abcdefTOKEN"
    value = "remote-" + "value-" + "41c9e7d2"
    fake = FakeDoppler()
    try:
        fake.grant(token)
        fake.put("proj", "dev", "TOKEN", value)
        root = tmp_path / "repo"
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        write(root / "keyrun.toml", f'project = "proj"\n[keys]\nTOKEN = {{}}\n'
              f'[sources.doppler]\ntype = "doppler"\napi_host = "{fake.url}"\n'
              '[env.dev]\nsources = ["doppler"]\n')
        env = clean_env(tmp_path, DOPPLER_TOKEN=token)
        assert keyrun(["scan", "--staged"], cwd=root, env=env).returncode == 0
        (root / "logo.png").write_bytes(b"\x89PNG\0\0\0" + value.encode())
        git(root, "add", "keyrun.toml", "logo.png")
        git(root, "rm", "-q", "--cached", "keyrun.toml")
        assert keyrun(["scan", "--staged"], cwd=root, env=env).returncode == 0
        assert fake.seen == []
        write(root / "notes.txt", f"the token is {value}\n")
        git(root, "add", "notes.txt")
        done = keyrun(["scan", "--staged"], cwd=root, env=env)
        assert done.returncode == 1
        assert done.stdout.split()[:2] == ["notes.txt:1", "profile-value"]
        assert value not in done.stdout + done.stderr
        assert [seen.path for seen in fake.seen] == ["/v3/configs/config/secrets/download"]
    finally:
        fake.stop()
