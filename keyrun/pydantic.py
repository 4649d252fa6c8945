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
the profile instead of ``os.environ``. The profile is resolved when the first source is
built, fail closed (a missing required key raises keyrun's error), and once per process for
the same arguments: a Settings class instantiated again reuses the values, so a Vault
profile does not lease a new credential each time (``keyrun.release()`` revokes the leases
and forgets the values; the next source loads afresh).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keyrun.values import Values

try:
    from pydantic_settings import BaseSettings, EnvSettingsSource
except ImportError:
    from keyrun.installer import add_extra_command

    raise ModuleNotFoundError(
        "keyrun.pydantic needs pydantic-settings, which is not installed; "
        f"install it with: {add_extra_command('pydantic')}", name="pydantic_settings") from None
try:
    from pydantic_settings.sources.utils import parse_env_vars
except ImportError:  # pydantic-settings < 2.9 kept its sources in one module
    from pydantic_settings.sources import (  # type: ignore[attr-defined,no-redef]
        parse_env_vars,
    )


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
        from keyrun.api import load_once

        self.keyrun_values = load_once(env, config=config, project=project, only=only,
                                       allow_missing=allow_missing)
        super().__init__(settings_cls, **env_options)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return Values(parse_env_vars(self.keyrun_values, self.case_sensitive,
                                     self.env_ignore_empty, self.env_parse_none_str))

    def __repr__(self) -> str:
        return f"KeyrunSettingsSource(keys={sorted(self.keyrun_values)})"
