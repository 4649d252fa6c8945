"""The ``environ`` source: keys from keyrun's own environment, where CI systems put secrets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keyrun.errors import SourceError
from keyrun.secret import Secret
from keyrun.sources import (
    Context,
    Deadline,
    Health,
    Item,
    Meta,
    Option,
    Outcome,
    Problem,
    Request,
    Source,
)


class EnvironSource(Source):
    """keyrun's own environment: the variables a CI system hands to the job (GitHub Actions
    ``env:`` and ``secrets``, GitLab CI variables), so that a CI environment is an ordinary
    profile that is checked, masked and logged like the others.

    A key is read from the variable ``prefix`` + its backend name (``prefix = "CI_"`` reads
    ``CI_OPENAI_API_KEY`` for ``OPENAI_API_KEY``; a key's ``name`` changes the part after
    the prefix). An empty variable counts as missing: GitHub Actions turns a secret that does
    not exist into an empty string, and a run must fail closed rather than start without
    the key. A variable read under another name than its key's is removed from the
    command's environment (unless ``pass_env`` lists it), so the command sees each value
    once, under the name the profile gives it. Not writable.

    .. code-block:: toml

        [sources.ci]
        type = "environ"
        prefix = "CI_"          # CI_OPENAI_API_KEY → OPENAI_API_KEY
    """

    type_name = "environ"
    summary = "keyrun's own environment, as CI systems set it (read-only)"
    remote = False
    options = (
        Option("prefix", "put before each key's name to find its variable", default="",
               example="CI_"),
    )

    def __init__(self, name: str, settings: Mapping[str, Any], context: Context) -> None:
        super().__init__(name, settings, context)
        self._renamed: set[str] = set()  # filled by fetch

    def variable(self, request: Request) -> str:
        """The variable ``request`` is read from."""
        return f"{self.settings['prefix']}{request.name}"

    def locate(self, request: Request) -> str:
        return f"${self.variable(request)}"

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        for request in requests:
            variable = self.variable(request)
            value = self.context.environ.get(variable, "")
            if not value:
                state = "is empty" if variable in self.context.environ else "is not set"
                results[request.key] = Problem.missing(f"${variable} {state} in keyrun's "
                                                       "environment")
                continue
            if variable != request.key:
                self._renamed.add(variable)
            results[request.key] = Item(Secret(value))
        return results

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        return {r.key: Meta(exists=bool(self.context.environ.get(self.variable(r))))
                for r in requests}

    def check(self, deadline: Deadline) -> Health:
        prefix = self.settings["prefix"]
        where = f"variables named {prefix}KEY" if prefix else "variables named after the keys"
        return Health(f"keyrun's environment ({where})")

    def read_only(self, request: Request) -> SourceError:
        return SourceError(self.name, "an environ source reads keyrun's own environment and "
                          "cannot be written",
                          f"set ${self.variable(request)} where keyrun starts (a CI secret, "
                          "or export it), or write to another source with --source NAME")

    def consumed_env_vars(self) -> tuple[str, ...]:
        return tuple(sorted(self._renamed))
