"""The pydantic-settings source, with run's precedence and with --preserve-env's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from keyrun.errors import ResolutionError
from keyrun.pydantic import KeyrunSettingsSource
from tests.helpers import write


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(tmp_path / "keyrun.toml", """
[keys]
OPENAI_API_KEY = {}
APP_MODEL = { optional = true }
[sources.local]
type = "dotenv"
[env.dev]
sources = ["local"]
""")
    write(tmp_path / ".env", "OPENAI_API_KEY=sk-pydantic-123456789\nAPP_MODEL=gpt-x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYRUN_ACCESS_LOG", "off")
    return tmp_path


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
    with pytest.raises(ResolutionError, match="OPENAI_API_KEY: missing"):
        Prefixed()
