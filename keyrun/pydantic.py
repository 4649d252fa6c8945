"""A pydantic-settings source that reads fields from a keyrun profile (``keyrun[pydantic]``).

.. code-block:: python

    from pydantic_settings import BaseSettings
    from keyrun.pydantic import KeyrunSettingsSource

    class Settings(BaseSettings):
        openai_api_key: str

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            keyrun = KeyrunSettingsSource(settings_cls, env="staging")
            return init_settings, keyrun, env_settings, dotenv_settings, file_secret_settings

Placed before ``env_settings`` it gives ``keyrun run``'s precedence (the profile's value
overrides an inherited variable); placed after it, ``--preserve-env``'s. Field names map to
keys exactly as pydantic-settings maps them to environment variables (``env_prefix``, case
sensitivity, aliases, nested delimiters), because this is its environment source reading
the profile instead of ``os.environ``. The profile is resolved when the source is built,
fail closed: a missing required key raises keyrun's error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars


class KeyrunSettingsSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a keyrun profile instead."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        env: str | None = None,
        *,
        config: str | Path | None = None,
        project: str | None = None,
        only: Sequence[str] = (),
        allow_missing: bool = False,
        **env_options: Any,
    ) -> None:
        from keyrun.api import load

        self.keyrun_values = load(env, config=config, project=project, only=only,
                                  allow_missing=allow_missing)
        super().__init__(settings_cls, **env_options)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self.keyrun_values, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)

    def __repr__(self) -> str:
        return f"KeyrunSettingsSource(keys={sorted(self.keyrun_values)})"
