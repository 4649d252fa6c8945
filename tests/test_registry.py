"""Source discovery: entry points, lazy imports, and the missing-SDK message."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from keyrun.sources.registry import BUILTIN, installed_types
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
    assert caught.value.hint == "install it with: pip install 'keyrun[aws]'"
