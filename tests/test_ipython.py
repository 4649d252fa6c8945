"""%load_ext keyrun in a real IPython shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, write

SCRIPT = """
import sys
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "keyrun")
for number, cell in enumerate(sys.argv[1:], 1):
    result = ip.run_cell(cell)
    print(f"[{number}: {'ok' if result.success else type(result.error_in_exec).__name__}]",
          flush=True)
    sys.stderr.flush()
"""


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    root = tmp_path / "nb"
    write(root / "keyrun.toml", """
default_env = "dev"
[keys]
OPENAI_API_KEY = {}
[sources.local]
type = "dotenv"
path = ".env.{env}"
[env.dev]
sources = ["local"]
[env.staging]
sources = ["local"]
""")
    write(root / ".env.staging", "OPENAI_API_KEY=sk-ipython-123456789\n")
    write(root / ".env.dev", "OTHER=1\n")
    return root


def cells(root: Path, tmp_path: Path, *lines: str) -> tuple[list[str], str]:
    env = clean_env(tmp_path, IPYTHONDIR=str(tmp_path / "ipython"))
    done = subprocess.run([sys.executable, "-c", SCRIPT, *lines], cwd=root, env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sk-ipython-123456789" not in done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if line.strip()], done.stderr


def test_magic(notebook: Path, tmp_path: Path) -> None:
    out, err = cells(notebook, tmp_path, "%keyrun --list staging", "%keyrun staging",
                     "import os; print('value ok:', os.environ.get('OPENAI_API_KEY') "
                     "== 'sk-ipython-123456789')", "%keyrun nope")
    assert out == ["keyrun: nb/staging", "  OPENAI_API_KEY               ok        local",
                   "[1: ok]", "keyrun: nb/staging: set OPENAI_API_KEY", "[2: ok]",
                   "value ok: True", "[3: ok]", "[4: UsageError]"]
    assert err.splitlines() == [
        f"UsageError: keyrun: {notebook}/keyrun.toml: unknown environment 'nope'",
        "  hint: environments: dev, staging"]
    assert os.environ.get("OPENAI_API_KEY") != "sk-ipython-123456789"


def test_a_missing_key_fails_the_cell_and_names_the_magics_option(notebook: Path,
                                                                  tmp_path: Path) -> None:
    out, err = cells(notebook, tmp_path, "%keyrun dev", "%keyrun --allow-missing -e dev")
    assert out == ["[1: UsageError]", "keyrun: nb/dev: set no keys", "[2: ok]"]
    assert err.splitlines() == [
        "UsageError: keyrun: cannot run with nb/dev:",
        "  OPENAI_API_KEY: missing from local (not found in .env.dev)",
        "  hint: set it with: keyrun set OPENAI_API_KEY -e dev; or load without it: "
        "%keyrun --allow-missing dev",
        "keyrun: warning: OPENAI_API_KEY is missing; loading without it "
        "(%keyrun --allow-missing dev)"]


def test_list_shows_the_environment_injected_last(notebook: Path, tmp_path: Path) -> None:
    out, _ = cells(notebook, tmp_path, "%keyrun --list", "%keyrun -e staging", "%keyrun --list")
    assert out == ["keyrun: nb/dev", "  OPENAI_API_KEY               missing   local",
                   "[1: ok]", "keyrun: nb/staging: set OPENAI_API_KEY", "[2: ok]",
                   "keyrun: nb/staging", "  OPENAI_API_KEY               ok        local",
                   "[3: ok]"]


def test_bad_arguments_fail_the_cell(notebook: Path, tmp_path: Path) -> None:
    out, err = cells(notebook, tmp_path, "%keyrun --bogus", "%keyrun staging -e dev")
    assert out == ["[1: UsageError]", "[2: UsageError]"]
    usage = ("usage: %keyrun [ENV | -e ENV] [--list] [-c CONFIG] [-p PROJECT] [--preserve-env] "
             "[--allow-missing]")
    assert err.splitlines() == [
        "UsageError: keyrun: unrecognized arguments: --bogus", usage,
        "UsageError: keyrun: two environments named: staging and -e dev", usage]


def test_every_resolution_is_in_the_access_log(notebook: Path, tmp_path: Path) -> None:
    cells(notebook, tmp_path, "%keyrun --list staging", "%keyrun staging", "%keyrun --list")
    log = (tmp_path / "access.log").read_text()
    assert "sk-ipython-123456789" not in log
    entries = [json.loads(line) for line in log.splitlines()]
    assert [(e["action"], e["env"], e["keys"], e["missing"]) for e in entries] == [
        ("list", "staging", [{"name": "OPENAI_API_KEY", "source": "local", "version": None}], []),
        ("inject", "staging", [{"name": "OPENAI_API_KEY", "source": "local", "version": None}],
         []),
        ("list", "staging", [{"name": "OPENAI_API_KEY", "source": "local", "version": None}], []),
    ]
