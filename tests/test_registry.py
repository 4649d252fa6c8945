"""Source discovery: entry points, lazy imports, and the missing-SDK message."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from keyrun.installer import add_extra_command
from keyrun.sources.registry import BUILTIN, installed_types
from tests.conftest import SecretService
from tests.helpers import clean_env, write

ROOT = Path(__file__).resolve().parent.parent


def test_builtin_table_mirrors_the_entry_points() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "keyrun.sources"]
    assert declared == BUILTIN


def test_installed_types_lists_builtins_first() -> None:
    names = [t.name for t in installed_types()]
    assert names[: len(BUILTIN)] == list(BUILTIN)


def test_a_dotenv_run_imports_no_other_source_and_no_sdk(tmp_path: Path) -> None:
    write(tmp_path / ".env", "A=1\n")
    code = (
        "import sys\n"
        "from keyrun.profile import open_profile\n"
        "from keyrun.resolve import fetch_profile\n"
        "fetch_profile(open_profile(None))\n"
        "heavy = ['keyring', 'boto3', 'botocore', 'hvac', 'google', 'azure', 'httpx', 'typer',"
        " 'rich', 'keyrun.sources.aws', 'keyrun.sources.vault', 'importlib.metadata']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n", done.stderr


def test_missing_sdk_names_the_pip_command(tmp_path: Path) -> None:
    from keyrun.errors import MissingSdkError
    from keyrun.sources import Context, import_sdk
    from keyrun.sources.dotenv import DotenvSource

    source = DotenvSource("x", {"path": ".env"}, Context("p", "e", tmp_path, {}))
    source.extra = "aws"  # type: ignore[misc]
    with pytest.raises(MissingSdkError) as caught:
        import_sdk("no_such_sdk_module_keyrun", source)
    # the command for the installer that installed keyrun (tests/test_installer.py)
    assert caught.value.hint == f"install it with: {add_extra_command('aws')}"


KEYRING_REASON = ("import keyring\n"
                  "from keyrun.sources.registry import installed_types, source_class, "
                  "unusable_reason\n"
                  "keyring_type = next(t for t in installed_types() if t.name == 'keyring')\n"
                  "print(unusable_reason(keyring_type, source_class('keyring', where='x')))\n")


@pytest.mark.parametrize(("backend", "problem"), [
    ("fail", "means no keychain was found"),
    ("null", "is the null backend, which stores nothing")])
def test_keyring_is_unusable_without_a_keychain(backend: str, problem: str,
                                                tmp_path: Path) -> None:
    env = clean_env(tmp_path, PYTHON_KEYRING_BACKEND=f"keyring.backends.{backend}.Keyring")
    done = subprocess.run([sys.executable, "-c", KEYRING_REASON], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert done.stdout == (
        f"the keyring backend keyring.backends.{backend}.Keyring {problem} "
        "(`python -m keyring diagnose` shows what keyring sees; a Secret Service daemon, the "
        "macOS Keychain or the Windows Credential Locker is needed)\n"), done.stderr


def test_keyring_is_usable_with_a_keychain(secret_service: SecretService, tmp_path: Path
                                           ) -> None:
    env = clean_env(tmp_path, **secret_service.env)
    env.pop("PYTHON_KEYRING_BACKEND")
    done = subprocess.run([sys.executable, "-c", KEYRING_REASON], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert done.stdout == "None\n", done.stderr


def test_a_builtin_extra_not_installed(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['hvac'] = None\n"
            "from keyrun.sources.registry import installed_types, source_class, unusable_reason\n"
            "vault = next(t for t in installed_types() if t.name == 'vault')\n"
            "print(unusable_reason(vault, source_class('vault', where='x')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, check=False)
    with contextlib.chdir(tmp_path):
        command = add_extra_command("vault")
    assert done.stdout == f"{command} (missing hvac)\n", done.stderr
