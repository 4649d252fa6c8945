"""The pydantic-settings source, with run's precedence and with --preserve-env's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from keyrun.api import release
from keyrun.errors import ResolutionError
from keyrun.installer import add_extra_command
from keyrun.pydantic import KeyrunSettingsSource
from tests.helpers import clean_env, write, write_project
from tests.vault_server import (
    ROOT_TOKEN,
    OpenBao,
    Redis,
    configure_redis_engine,
    dynamic_config,
)


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_project(tmp_path, """
[keys]
OPENAI_API_KEY = {}
APP_MODEL = { optional = true }
[sources.local]
type = "dotenv"
[env.dev]
sources = ["local"]
""", {".env": "OPENAI_API_KEY=sk-pydantic-123456789\nAPP_MODEL=gpt-x\n"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYRUN_ACCESS_LOG", "off")
    return tmp_path


@pytest.fixture(autouse=True)
def _forget_loaded_profiles() -> Iterator[None]:
    release()
    yield
    release()


def settings_class(preserve_env: bool) -> type[BaseSettings]:
    class Settings(BaseSettings):
        openai_api_key: SecretStr
        app_model: str = "default"

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                       init_settings: PydanticBaseSettingsSource,
                                       env_settings: PydanticBaseSettingsSource,
                                       dotenv_settings: PydanticBaseSettingsSource,
                                       file_secret_settings: PydanticBaseSettingsSource,
                                       ) -> tuple[Any, ...]:
            keyrun = KeyrunSettingsSource(settings_cls, env="dev")
            if preserve_env:
                return init_settings, env_settings, keyrun
            return init_settings, keyrun, env_settings

    return Settings


def test_profile_values_fill_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    settings: Any = settings_class(False)()
    assert settings.openai_api_key.get_secret_value() == "sk-pydantic-123456789"
    assert settings.app_model == "gpt-x"


def test_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_MODEL", "from-shell")
    run_like: Any = settings_class(False)()
    assert run_like.app_model == "gpt-x"
    preserving: Any = settings_class(True)()
    assert preserving.app_model == "from-shell"


def test_prefix_and_missing_keys(project: Path) -> None:
    class Prefixed(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="APP_")
        model: str

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings], **sources: Any
                                       ) -> tuple[Any, ...]:
            return (KeyrunSettingsSource(settings_cls),)

    prefixed: Any = Prefixed()
    assert prefixed.model == "gpt-x"
    write(project / ".env", "APP_MODEL=x\n")
    assert Prefixed().model == "gpt-x"  # loaded once per process
    release()
    with pytest.raises(ResolutionError, match="OPENAI_API_KEY: missing"):
        Prefixed()


def test_the_profile_is_loaded_once_per_process(project: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYRUN_ACCESS_LOG", str(project / "access.log"))
    settings = settings_class(False)
    assert [settings().model_dump()["app_model"] for _ in range(3)] == ["gpt-x"] * 3
    lines = (project / "access.log").read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["load"]


def test_one_lease_for_every_settings_instance(openbao: OpenBao, redis_server: Redis,
                                               project: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    configure_redis_engine(openbao, redis_server, role="settings")
    write(project / "keyrun.toml", dynamic_config(openbao.url, "settings"))
    monkeypatch.setenv("VAULT_TOKEN", ROOT_TOKEN)
    monkeypatch.setenv("HOME", str(project))

    class Settings(BaseSettings):
        redis_user: str
        redis_password: SecretStr

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings], **sources: Any
                                       ) -> tuple[Any, ...]:
            return (KeyrunSettingsSource(settings_cls, env="dev"),)

    before = set(redis_server.users())
    users = {Settings().redis_user for _ in range(3)}
    assert len(users) == 1
    assert set(redis_server.users()) - before == users
    release()
    assert set(redis_server.users()) == before
    again = Settings().redis_user  # released: the next instance loads afresh
    assert again not in users
    release()
    assert not redis_server.user_exists(again)


def test_without_the_extra_the_import_names_the_pip_command(tmp_path: Path) -> None:
    code = "import sys; sys.modules['pydantic_settings'] = None; import keyrun.pydantic"
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(tmp_path),
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "ModuleNotFoundError: keyrun.pydantic needs pydantic-settings, which is not "
        f"installed; install it with: {add_extra_command('pydantic')}")


def test_pydantic_settings_before_2_9(project: Path, tmp_path: Path) -> None:
    """Up to 2.8, pydantic_settings.sources was one module holding parse_env_vars."""
    code = (
        "import sys, pydantic_settings.sources as sources\n"
        "if hasattr(sources, '__path__'):  # 2.9 or later: made to look like 2.8\n"
        "    from pydantic_settings.sources.utils import parse_env_vars\n"
        "    sys.modules['pydantic_settings.sources.utils'] = None\n"
        "    sources.parse_env_vars = parse_env_vars\n"
        "from pydantic_settings import BaseSettings\n"
        "from keyrun.pydantic import KeyrunSettingsSource\n"
        "class S(BaseSettings):\n"
        "    app_model: str\n"
        "    @classmethod\n"
        "    def settings_customise_sources(cls, settings_cls, **sources):\n"
        "        return (KeyrunSettingsSource(settings_cls),)\n"
        "print(S().app_model)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=project, env=clean_env(tmp_path),
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.stdout == "gpt-x\n", done.stderr
