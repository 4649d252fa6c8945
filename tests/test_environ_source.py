"""The ``environ`` source: the contract suite, and a CI environment run through the real
command line (prefixes, the variables it read leaving the command's environment, empty
secrets failing closed, set refused, list/doctor/--mask), and the GitHub Actions example."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from keyrun.errors import SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Item, Problem, Request, Source
from keyrun.sources.environ import EnvironSource
from keyrun.testing import Harness, SourceContract
from tests.helpers import assert_no_leak, build_source, clean_env, keyrun, write, write_project

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "github-actions"
OPENAI = "sk-proj-" + "Zq8fL2mVx4Rt7Ky1Nb6Wc3Hd9Pj5Gs0A"  # fake, format-valid
DB_URL = "postgres://app:" + "uG7kd2Lq9Zx4Wm1R" + "@db.internal:5432/app"
DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


def make(environ: dict[str, str], **settings: object) -> EnvironSource:
    return build_source(EnvironSource, "ci", settings, env="ci", environ=environ)


class EnvironHarness(Harness):
    supports_empty = False  # an empty variable is a secret GitHub did not have: missing

    def __init__(self) -> None:
        self.environ: dict[str, str] = {"UNRELATED": "x"}

    def put(self, name: str, value: str) -> None:
        self.environ[f"CI_{name}"] = value

    def source(self) -> Source:
        return make(self.environ, prefix="CI_")


class TestEnvironContract(SourceContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return EnvironHarness()


def test_prefix_and_name_choose_the_variable() -> None:
    source = make({"CI_db-url": DB_URL, "OPENAI_API_KEY": OPENAI}, prefix="CI_")
    found = source.fetch([Request("DATABASE_URL", "db-url"), Request("OPENAI_API_KEY",
                                                                     "OPENAI_API_KEY")],
                         Deadline(5))
    database, openai = found["DATABASE_URL"], found["OPENAI_API_KEY"]
    assert isinstance(database, Item)
    assert database.value.reveal() == DB_URL
    assert openai == Problem("missing", "$CI_OPENAI_API_KEY is not set in keyrun's environment")
    assert source.locate(Request("DATABASE_URL", "db-url")) == "$CI_db-url"
    assert source.consumed_env_vars() == ("CI_db-url",)


def test_an_empty_variable_is_missing() -> None:
    source = make({"OPENAI_API_KEY": ""})
    outcome = source.fetch([Request("OPENAI_API_KEY", "OPENAI_API_KEY")], Deadline(5))
    assert outcome["OPENAI_API_KEY"] == Problem(
        "missing", "$OPENAI_API_KEY is empty in keyrun's environment")


def test_a_key_read_under_its_own_name_is_not_stripped() -> None:
    source = make({"OPENAI_API_KEY": OPENAI})
    source.fetch([Request("OPENAI_API_KEY", "OPENAI_API_KEY")], Deadline(5))
    assert source.consumed_env_vars() == ()


def test_write_is_refused_with_the_variable_to_set() -> None:
    source = make({}, prefix="CI_")
    with pytest.raises(SourceError) as caught:
        source.write(Request("OPENAI_API_KEY", "OPENAI_API_KEY"), Secret(OPENAI), Deadline(5))
    assert not source.writable
    assert caught.value.message == ("ci: an environ source reads keyrun's own environment and "
                                    "cannot be written")
    assert caught.value.hint == ("set $CI_OPENAI_API_KEY where keyrun starts (a CI secret, or "
                                 "export it), or write to another source with --source NAME")


CONFIG = """\
project = "support-bot"
default_env = "ci"

[keys]
OPENAI_API_KEY = {}
DATABASE_URL = { name = "DB_URL" }

[sources.ci]
type = "environ"
prefix = "CI_"

[env.ci]
sources = ["ci"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", CONFIG)


def _ci_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(tmp_path, **{"CI_OPENAI_API_KEY": OPENAI, "CI_DB_URL": DB_URL, **extra})


def test_a_ci_run_gets_the_keys_under_their_own_names(project: Path, tmp_path: Path) -> None:
    done = keyrun(["-e", "ci", "-v", "--", sys.executable, "-c", DUMP], cwd=project,
                  env=_ci_env(tmp_path))
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)
    assert child["OPENAI_API_KEY"] == OPENAI
    assert child["DATABASE_URL"] == DB_URL
    assert child["KEYRUN_PROFILE"] == "support-bot/ci"
    assert "CI_OPENAI_API_KEY" not in child
    assert "CI_DB_URL" not in child
    assert "CI_DB_URL: removed from the command's environment" in done.stderr
    assert_no_leak(OPENAI, done.stderr)
    assert_no_leak(DB_URL, done.stderr)
    log = (tmp_path / "access.log").read_text()
    assert '"source":"ci"' in log
    assert OPENAI not in log
    assert DB_URL not in log


def test_pass_env_keeps_the_variable_it_read(project: Path, tmp_path: Path) -> None:
    write(project / "keyrun.toml", CONFIG.replace('sources = ["ci"]',
                                                  'sources = ["ci"]\npass_env = ["CI_DB_URL"]'))
    done = keyrun(["--", sys.executable, "-c", DUMP], cwd=project, env=_ci_env(tmp_path))
    child = json.loads(done.stdout)
    assert child["CI_DB_URL"] == DB_URL
    assert "CI_OPENAI_API_KEY" not in child


def test_an_empty_secret_stops_the_run(project: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    done = keyrun(["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"], cwd=project,
                  env=_ci_env(tmp_path, CI_OPENAI_API_KEY=""))
    assert done.returncode == 125
    assert "$CI_OPENAI_API_KEY is empty in keyrun's environment" in done.stderr
    assert not marker.exists()
    assert_no_leak(DB_URL, done.stdout, done.stderr)


@pytest.mark.parametrize("chosen", [[], ["--source", "ci"]])
def test_set_names_the_variable_instead(project: Path, tmp_path: Path, chosen: list[str]
                                        ) -> None:
    done = keyrun(["set", "OPENAI_API_KEY", *chosen], cwd=project, env=_ci_env(tmp_path),
                  input="sk-new-value-0123456789")
    assert done.returncode == 125
    assert done.stderr == (
        "keyrun: error: ci: an environ source reads keyrun's own environment and cannot be "
        "written\n  hint: set $CI_OPENAI_API_KEY where keyrun starts (a CI secret, or export "
        "it), or write to another source with --source NAME\n")
    assert_no_leak("sk-new-value-0123456789", done.stdout)


def test_a_missing_secret_names_the_variable_to_set_not_keyrun_set(project: Path,
                                                                   tmp_path: Path) -> None:
    """keyrun set refuses an environ source: run, doctor and inject say what works."""
    env = _ci_env(tmp_path, CI_OPENAI_API_KEY="")
    instead = "set $CI_OPENAI_API_KEY where keyrun starts (a CI secret, or export it)"
    run = keyrun(["--", sys.executable, "-c", "pass"], cwd=project, env=env)
    assert run.returncode == 125
    assert f"hint: {instead}" in run.stderr
    doctor = keyrun(["doctor", "--json"], cwd=project, env=env)
    fix = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["missing-keys"]["fix"]
    assert fix.startswith(instead)
    inject = keyrun(["--allow-missing", "--", sys.executable, "-c",
                     "import keyrun; keyrun.inject(only=['OPENAI_API_KEY'])"], cwd=project, env=env)
    assert f"{instead}" in inject.stderr
    for done in (run, doctor, inject):
        assert "keyrun set" not in done.stdout + done.stderr
    assert_no_leak(DB_URL, run.stderr, doctor.stdout, inject.stderr)


def test_list_and_doctor_show_it_like_any_source(project: Path, tmp_path: Path) -> None:
    listed = keyrun(["list", "--json"], cwd=project, env=_ci_env(tmp_path))
    rows = {row["name"]: row for row in json.loads(listed.stdout)["keys"]}
    assert rows["OPENAI_API_KEY"]["source"] == "ci"
    assert rows["OPENAI_API_KEY"]["location"] == "$CI_OPENAI_API_KEY"
    assert rows["OPENAI_API_KEY"]["status"] == "ok"
    assert rows["OPENAI_API_KEY"]["preview"] == "sk-…Gs0A"
    assert rows["DATABASE_URL"]["location"] == "$CI_DB_URL"
    doctor = keyrun(["doctor", "--json"], cwd=project, env=_ci_env(tmp_path))
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["sources"]["status"] == "pass"
    assert "keyrun's environment (variables named CI_KEY)" in checks["sources"]["message"]
    assert checks["missing-keys"]["status"] == "pass"
    missing = keyrun(["doctor", "--json"], cwd=project, env=clean_env(tmp_path))
    failed = {c["id"]: c for c in json.loads(missing.stdout)["checks"]}["missing-keys"]
    assert failed["status"] == "fail"
    assert failed["keys"] == ["OPENAI_API_KEY", "DATABASE_URL"]
    assert_no_leak(OPENAI, listed.stdout, doctor.stdout, listed.stderr, doctor.stderr)


def test_mask_hides_what_the_tests_print(project: Path, tmp_path: Path) -> None:
    code = "import os; print('key', os.environ['OPENAI_API_KEY'], os.environ['DATABASE_URL'])"
    done = keyrun(["-e", "ci", "--mask", "--", sys.executable, "-c", code], cwd=project,
                  env=_ci_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "key <OPENAI_API_KEY> <DATABASE_URL>\n"


def _workflow_secrets(workflow: str) -> dict[str, str]:
    """The variables the workflow's keyrun steps set, and the secret each comes from."""
    return dict(re.findall(r"^\s+(\w+): \$\{\{ secrets\.(\w+) \}\}\s*$", workflow, re.M))


def test_the_github_actions_example(tmp_path: Path) -> None:
    workflow = (EXAMPLE / "ci.yml").read_text()
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(EXAMPLE / "keyrun.toml", root / "keyrun.toml")
    variables = _workflow_secrets(workflow)
    assert variables == {"CI_OPENAI_API_KEY": "OPENAI_API_KEY",
                         "CI_ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY",
                         "CI_DATABASE_URL": "DATABASE_URL"}
    fake = {"CI_OPENAI_API_KEY": OPENAI, "CI_ANTHROPIC_API_KEY": "sk-ant-api03-" + "k" * 30,
            "CI_DATABASE_URL": DB_URL}
    steps = re.findall(r"^\s+- run: (keyrun .*?)\s*(?:#.*)?$", workflow, re.M)
    assert steps == ["keyrun doctor -e ci", "keyrun -e ci --mask -- pytest -q"]
    test = tmp_path / "test_keys.py"
    write(test, "import os\n\ndef test_keys():\n    print(os.environ['OPENAI_API_KEY'])\n"
          "    assert os.environ['DATABASE_URL'].startswith('postgres://')\n"
          "    assert not [k for k in os.environ if k.startswith('CI_')]\n")
    env = clean_env(tmp_path, **fake)
    doctor = keyrun(steps[0].split()[1:], cwd=root, env=env)
    assert doctor.returncode == 0, doctor.stdout
    args = [*steps[1].split()[1:], "-s", "-p", "no:cacheprovider", str(test)]
    at = args.index("pytest")
    args[at:at + 1] = [sys.executable, "-m", "pytest"]
    done = keyrun(args, cwd=root, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<OPENAI_API_KEY>" in done.stdout
    assert_no_leak(OPENAI, done.stdout, done.stderr)
