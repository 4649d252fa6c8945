"""Location templates: ``{project}``, ``{env}`` and ``{key}``."""

from __future__ import annotations

from string import Formatter

from keyrun.errors import ConfigError

PLACEHOLDERS = ("project", "env", "key")


class Template:
    """A location such as ``"{project}/{env}/{key}"``.

    With ``{key}`` it names one backend item per key; without, one item that holds
    every key by name (a JSON object, a KV entry, a dotenv file, a Doppler config).
    """

    __slots__ = ("has_key", "text")

    def __init__(self, text: str, *, where: str) -> None:
        try:
            fields = [name for _, name, _, _ in Formatter().parse(text) if name is not None]
        except ValueError as exc:
            raise ConfigError(
                f"{where}: invalid template {text!r} ({exc})",
                "write literal braces as {{ and }}",
            ) from None
        for name in fields:
            if name not in PLACEHOLDERS:
                raise ConfigError(
                    f"{where}: unknown placeholder {{{name}}} in {text!r}",
                    "valid placeholders: {project}, {env}, {key}",
                )
        self.text = text
        self.has_key = "key" in fields

    def render(self, project: str, env: str, key: str | None = None) -> str:
        if self.has_key and key is None:
            raise ValueError(f"template {self.text!r} needs a key")
        return self.text.format(project=project, env=env, key=key)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"
