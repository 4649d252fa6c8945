"""keyrun scan's rules as data: the shipped rules file (every rule's own examples), the rules
a project adds in keyrun.toml, and the formats the issue names (escaped service-account keys,
base64 in Kubernetes Secrets, database URLs, JWTs, archives).

Keys are built at run time from documented prefixes and random characters, so this file
holds no key literal that a scanner (keyrun's own included) would rightly flag.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import string
import tarfile
import zipfile
from pathlib import Path

import pytest

from keyrun.config import parse_config
from keyrun.errors import ConfigError
from keyrun.preview import preview
from keyrun.scan import scan, scan_bytes
from keyrun.scan.archive import MAX_MEMBER_BYTES
from keyrun.scan.rules import builtin_rules, ruleset

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
RULES = builtin_rules(examples=True)


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def github_token(seed: int = 1) -> str:
    return "gh" + "p_" + rand(random.Random(seed), 36)


def rules_of(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [finding.rule for finding in scan_bytes(data)]


# -- the shipped rules ---------------------------------------------------------------------------

def test_every_rule_documents_itself_with_examples() -> None:
    assert len(RULES) >= 100
    for rule in RULES:
        assert rule.description != rule.id, rule.id
        assert rule.examples, f"{rule.id} has no examples"
        assert rule.counterexamples, f"{rule.id} has no counterexamples"


@pytest.mark.parametrize("rule", RULES, ids=[rule.id for rule in RULES])
def test_rule_examples(rule: object) -> None:
    from keyrun.scan.rules import Rule

    assert isinstance(rule, Rule)
    for example in rule.examples:
        assert rule.id in rules_of(example), f"{rule.id} misses its example {example[:60]!r}"
    for counter in rule.counterexamples:
        assert rule.id not in rules_of(counter), f"{rule.id} flags {counter[:60]!r}"


def test_the_rules_file_is_valid_and_its_errors_name_the_line(tmp_path: Path) -> None:
    from keyrun.config import parse_rules_file

    text = ('[[rules]]\nid = "a"\nregex = "a{3}"\n\n[[rules]]\nid = "b"\n'
            'regex = "(unclosed"\n')
    with pytest.raises(ConfigError) as caught:
        parse_rules_file(tmp_path / "rules.toml", text)
    assert str(caught.value).startswith(f"{tmp_path / 'rules.toml'}:7: [[rules]] #2 regex: "
                                        "not a valid regular expression")


def test_the_shipped_rules_pass_every_check_that_start_up_skips() -> None:
    """Start-up reads the package's rules without compiling them (a regex is compiled when a
    text needs its rule): here every regex is compiled and checked, as a project's are."""
    from keyrun.config import parse_rules_file
    from keyrun.scan import rules as rules_module

    path = Path(rules_module.__file__).with_name(rules_module.RULES_FILE)
    specs = parse_rules_file(path, path.read_text(encoding="utf-8"))
    assert [spec.id for spec in specs] == [rule.id for rule in RULES]
    assert all(rule.has_prefix == ("prefix" in rule.pattern.groupindex) for rule in RULES)


def test_start_up_reads_the_rules_as_written_but_for_their_examples() -> None:
    import dataclasses

    assert list(builtin_rules()) == [
        dataclasses.replace(rule, examples=(), counterexamples=()) for rule in RULES]


def test_a_rule_is_compiled_only_when_a_text_needs_it() -> None:
    from keyrun.config import parse_rules_file
    from keyrun.scan import rules as rules_module
    from keyrun.scan.engine import Text, find_rule_hits
    from keyrun.scan.rules import RuleSet, make_rule

    path = Path(rules_module.__file__).with_name(rules_module.RULES_FILE)
    fresh = [make_rule(spec) for spec in parse_rules_file(path, path.read_text(),
                                                          check_regexes=False)]
    rules = RuleSet.of(fresh)
    assert [rule for rule in fresh if "pattern" in vars(rule)] == []

    def compiled_after(text: str) -> set[str]:
        find_rule_hits(Text(text.encode()), rules)
        return {rule.id for rule in fresh if "pattern" in vars(rule)}

    everywhere = {rule.id for rule in fresh if not rule.keywords and rule.near is None}
    assert compiled_after("def add(a, b):\n    return a + b\n") == everywhere
    token = github_token(3)
    assert compiled_after(f"GH = {token!r}\n") == everywhere | {"github-token"}
    assert [f.rule for f in scan_bytes(f"GH = {token!r}\n".encode())] == ["github-token"]


# -- keyrun.toml's [scan] table ----------------------------------------------------------------

CONFIG_HEAD = '[keys]\nTOKEN = {}\n[sources.local]\ntype = "dotenv"\n[env.dev]\nsources = ["local"]\n'


def config(tmp_path: Path, scan_table: str) -> object:
    path = tmp_path / "keyrun.toml"
    return parse_config(path, CONFIG_HEAD + scan_table)


def test_scan_table_parses(tmp_path: Path) -> None:
    loaded = config(tmp_path, '[scan]\ndisable = ["jwt"]\nskip = ["tests/**"]\n'
                              'accepted = ["0123abcd"]\nbaseline = ".keyrun-baseline.json"\n'
                              '[[scan.rules]]\nid = "acme-token"\ndescription = "Acme"\n'
                              "regex = '''acme_[a-z0-9]{32}'''\nkeywords = [\"acme_\"]\n"
                              "entropy = 3.0\n")
    spec = loaded.scan  # type: ignore[attr-defined]
    assert spec.disable == ("jwt",)
    assert spec.skip == ("tests/**",)
    assert spec.accepted == ("0123abcd",)
    assert spec.baseline == tmp_path / ".keyrun-baseline.json"
    (rule,) = spec.rules
    assert (rule.id, rule.keywords, rule.entropy) == ("acme-token", ("acme_",), 3.0)
    assert rule.where == f"{tmp_path / 'keyrun.toml'}:12: [[scan.rules]] #1"


@pytest.mark.parametrize(("table", "message"), [
    ("[scan]\ndisabled = []\n", ":8: [scan] disabled: unknown key 'disabled'"),
    ("[scan]\nskip = \"tests\"\n", ":8: [scan] skip: must be a list of strings"),
    ("[[scan.rules]]\nid = \"x\"\nregex = \"a(\"\n",
     ":9: [[scan.rules]] #1 regex: not a valid regular expression"),
    ("[[scan.rules]]\nid = \"x\"\nregex = \"a*\"\n",
     ":9: [[scan.rules]] #1 regex: matches the empty string"),
    ("[[scan.rules]]\nid = \"x\"\nregex = \"abc\"\nentropy = 9\n",
     ":10: [[scan.rules]] #1 entropy: must be a number of bits per character"),
    ("[[scan.rules]]\nid = \"x\"\nregex = \"abc\"\nkeyword = [\"a\"]\n",
     ":10: [[scan.rules]] #1 keyword: unknown key 'keyword'"),
    ("[[scan.rules]]\nid = \"Bad Id\"\nregex = \"abc\"\n",
     ":8: [[scan.rules]] #1 id: a rule needs an id of lower-case letters"),
    ("[[scan.rules]]\nid = \"x\"\nregex = \"abc\"\n[[scan.rules]]\nid = \"x\"\nregex = \"def\"\n",
     ":10: [[scan.rules]] #2: a second rule with id 'x'"),
])
def test_scan_table_errors_name_the_line(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, table)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "keyrun.toml"))


def test_project_rules_add_replace_and_disable(tmp_path: Path) -> None:
    rng = random.Random(3)
    acme = "acme_" + rand(rng, 32, HEX)
    loaded = config(tmp_path, '[scan]\ndisable = ["github-token"]\n[[scan.rules]]\n'
                              'id = "acme-token"\ndescription = "Acme deploy token"\n'
                              "regex = '''(?P<prefix>acme_)[0-9a-f]{32}'''\n"
                              'keywords = ["acme_"]\n')
    (tmp_path / "a.txt").write_text(f"x = {acme}\ny = {github_token()}\n")
    result = scan([], root=tmp_path, settings=loaded.scan)  # type: ignore[attr-defined]
    assert [(f.path, f.line, f.rule, f.preview) for f in result.findings] == [
        ("a.txt", 1, "acme-token", "acme_…" + acme[-4:])]
    assert "acme-token" in ruleset(loaded.scan).titles()  # type: ignore[attr-defined]


def test_disabling_an_unknown_rule_is_an_error(tmp_path: Path) -> None:
    loaded = config(tmp_path, '[scan]\ndisable = ["no-such-rule"]\n')
    with pytest.raises(ConfigError, match=r"\[scan\] disable: no rule has the id 'no-such-rule'"):
        ruleset(loaded.scan)  # type: ignore[attr-defined]


def test_an_unknown_check_names_the_rule(tmp_path: Path) -> None:
    loaded = config(tmp_path, '[[scan.rules]]\nid = "x"\nregex = "abc"\ncheck = "luhn"\n')
    with pytest.raises(ConfigError, match=r":7: \[\[scan.rules\]\] #1: unknown check 'luhn'"):
        ruleset(loaded.scan)  # type: ignore[attr-defined]


# -- formats the issue names ---------------------------------------------------------------------

def _service_account(rng: random.Random) -> dict[str, str]:
    return {"type": "service_account", "project_id": "acme-prod",
            "private_key_id": rand(rng, 40, HEX),
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv" + rand(rng, 60, ALNUM + "+/")
                           + "\n" + rand(rng, 64, ALNUM + "+/") + "\n-----END PRIVATE KEY-----\n",
            "client_email": "bot@acme-prod.iam.gserviceaccount.com"}


def test_service_account_key_raw_escaped_and_in_a_kubernetes_secret() -> None:
    rng = random.Random(5)
    document = json.dumps(_service_account(rng), indent=2)
    assert rules_of(document) == ["gcp-service-account-key"]
    escaped_once = json.dumps({"GOOGLE_CREDENTIALS": json.dumps(_service_account(rng))})
    assert rules_of(escaped_once) == ["gcp-service-account-key"]
    escaped_twice = json.dumps({"tfstate": json.dumps({"value": json.dumps(
        _service_account(rng))})})
    assert rules_of(escaped_twice) == ["gcp-service-account-key"]
    encoded = base64.b64encode(json.dumps(_service_account(rng), indent=2).encode()).decode()
    manifest = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: gcp\ntype: Opaque\n"
                f"data:\n  key.json: {encoded}\n")
    (finding,) = scan_bytes(manifest.encode(), "secret.yaml")
    assert (finding.rule, finding.line) == ("gcp-service-account-key", 7)
    assert encoded not in finding.preview


def test_a_key_block_is_one_finding_whatever_its_lines_look_like() -> None:
    """A line of a private key's base64 can look like another format (``EAAA`` and 60
    characters is a Square token): the block is one finding, raw or escaped in JSON."""
    rng = random.Random(12)
    square_like = "EAAA" + rand(rng, 60, ALNUM)
    body = [rand(rng, 70, ALNUM + "+/"), rand(rng, 70, ALNUM + "+/"), square_like,
            rand(rng, 40, ALNUM + "+/") + "=="]
    pem = "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *body,
                     "-----END OPENSSH PRIVATE KEY-----"]) + "\n"
    assert rules_of(square_like) == ["square-token"]
    assert rules_of(pem) == ["private-key"]
    account = {**_service_account(rng), "private_key": pem.replace("OPENSSH ", "")}
    assert rules_of(json.dumps({"GOOGLE_CREDENTIALS": json.dumps(account)})) == [
        "gcp-service-account-key"]


def test_kubernetes_secret_values_but_not_config_maps() -> None:
    password = base64.b64encode(rand(random.Random(8), 20).encode()).decode()
    secret = f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  settings: {password}\n"
    assert rules_of(secret) == ["kubernetes-secret"]
    assert rules_of(secret.replace("kind: Secret", "kind: ConfigMap")) == []
    assert rules_of(secret.replace(password, "''")) == []
    string_data = secret.replace("data:", "stringData:").replace(password, rand(
        random.Random(9), 20))
    assert rules_of(string_data) == ["kubernetes-secret"]


@pytest.mark.parametrize("url", [
    "postgres://app:{pw}@db.internal:5432/app",
    "postgresql+psycopg2://app:{pw}@db.internal/app",
    "mysql://root:{pw}@10.0.0.5:3306/shop",
    "mongodb+srv://svc:{pw}@cluster0.abcde.mongodb.net/prod?retryWrites=true",
    "rediss://default:{pw}@cache.acme.io:6380/0",
    "amqps://worker:{pw}@mq.acme.io/vhost",
    "jdbc:postgresql://db.acme.io:5432/app?user=app&password={pw}",
    "jdbc:sqlserver://db.acme.io:1433;databaseName=app;user=svc;password={pw}",
])
def test_database_urls_with_a_password(url: str) -> None:
    password = rand(random.Random(url), 18)
    text = f"DATABASE_URL={url.format(pw=password)}\n"
    (finding,) = scan_bytes(text.encode())
    assert finding.rule in ("database-url-password", "jdbc-password")
    assert password not in finding.preview


@pytest.mark.parametrize("url", [
    "postgresql://user:password@localhost/mydb",
    "postgres://postgres:postgres@localhost:5432/test",
    "mysql://root:${MYSQL_ROOT_PASSWORD}@db/app",
    "redis://:changeme@localhost:6379",
    "amqp://guest:guest@localhost:5672/",
    "mongodb://<user>:<password>@host/db",
    "postgres://app:%(password)s@db/app",
])
def test_database_url_placeholders(url: str) -> None:
    assert rules_of(f"DATABASE_URL={url}\n") == []


def test_jwt_and_base64_jwt() -> None:
    rng = random.Random(11)

    def segment(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    token = ".".join([segment({"alg": "HS256", "typ": "JWT"}),
                      segment({"role": "service_role", "iss": "supabase"}), rand(rng, 43)])
    assert rules_of(f"SUPABASE_SERVICE_ROLE_KEY={token}\n") == ["jwt"]
    wrapped = base64.b64encode(token.encode()).decode()
    assert rules_of(f"TOKEN={wrapped}\n") == ["jwt"]
    assert rules_of(f"version = {segment({'a': 1})}.{segment({'b': 2})}\n") == []


@pytest.mark.parametrize(("text", "rule"), [
    ("xoxp-" + "572370529330-573807301142-572331691188-" + "#" * 20, None),
    ("TOKEN=xoxe.xoxp-1-" + "SlackAppConfigurationAccessTokenHere", None),
    ("ANTHROPIC_API_KEY=sk-ant-api03-" + "x" * 93 + "AA", None),
    ("sk-ant-api03-" + "Ab1" * 31 + "BB", None),
])
def test_false_positives_the_issue_names(text: str, rule: str | None) -> None:
    assert rules_of(text) == ([] if rule is None else [rule])


# -- archives --------------------------------------------------------------------------------------

def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_archives_are_opened_in_memory(tmp_path: Path) -> None:
    token = github_token(21)
    config_text = f"GITHUB_TOKEN={token}\n".encode()
    jar = _zip({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n",
                "application.properties": b"x=1\n" + config_text})
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "app-1.0-py3-none-any.whl").write_bytes(
        _zip({"app/__init__.py": b"", "app/settings.py": config_text, "logo.png": b"\x89PNG\0"}))
    (tmp_path / "dist" / "bundle.tar.gz").write_bytes(
        _tar_gz({"bundle/lib/app.jar": jar, "bundle/README": b"no secrets here\n"}))
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b"a\n" + config_text))
    result = scan([], root=tmp_path)
    assert [(f.path, f.line, f.rule) for f in result.findings] == [
        ("dist/app-1.0-py3-none-any.whl!app/settings.py", 1, "github-token"),
        ("dist/bundle.tar.gz!bundle/lib/app.jar!application.properties", 2, "github-token"),
        ("notes.txt.gz!notes.txt", 2, "github-token"),
    ]
    assert result.skipped == []


def test_a_zip_bomb_is_reported_not_followed(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"0" * (MAX_MEMBER_BYTES + 1))
        archive.writestr("later.txt", f"t = {github_token(4)}\n")
    (tmp_path / "bomb.zip").write_bytes(buffer.getvalue())
    assert len(buffer.getvalue()) < MAX_MEMBER_BYTES // 500
    result = scan([], root=tmp_path)
    assert result.findings == []
    (skipped,) = result.skipped
    assert skipped.path == "bomb.zip"
    assert "zeros.txt expands to 64 MiB, more than 64 MiB" in skipped.reason
    assert "not opened" in skipped.reason


def test_nesting_is_limited_and_damage_reported(tmp_path: Path) -> None:
    data = f"t = {github_token(6)}\n".encode()
    for depth in range(6):
        data = _zip({f"level{depth}": data})
    (tmp_path / "deep.zip").write_bytes(data)
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    result = scan([], root=tmp_path)
    assert result.findings == []
    reasons = {skipped.path.split("!")[0]: skipped.reason for skipped in result.skipped}
    assert "nested more than 4 deep" in reasons["deep.zip"]
    assert "a damaged zip archive" in reasons["broken.zip"]


# -- the preview policy ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "head", "shown"), [
    ("sk-proj-" + "a" * 92, 8, "sk-proj-…aaaa"),
    ("abcdefghijklmnop", 3, "abc…"),
    ("abcdefghijklmno", 3, "abc…"),
    ("abcdefghijk", 3, "ab…"),
    ("abc", 3, "…"),
    ("AKIA" + "B" * 16, 4, "AKIA…"),
    ("x" * 40, 0, "…xxxx"),
])
def test_preview_policy(value: str, head: int, shown: str) -> None:
    result = preview(value, head)
    assert result == shown
    visible = len(result) - 1
    assert visible <= len(value) // 4
    assert len(value) >= 16 or visible <= 4
