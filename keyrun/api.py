"""``keyrun.load`` and ``keyrun.inject``: the profile inside a Python process (SPEC §6)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from keyrun.environ import build_environment
from keyrun.run import Reporter, RunOptions, Selection, resolve_for_command


def load(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
) -> dict[str, str]:
    selection = Selection(env=env, project=project, config=None if config is None else str(config))
    options = RunOptions(only=tuple(only), allow_missing=allow_missing)
    resolution = resolve_for_command(selection, options, os.environ, Reporter(selection),
                                     action="load")
    return resolution.values()


def inject(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
    preserve_env: bool = False,
) -> list[str]:
    selection = Selection(env=env, project=project, config=None if config is None else str(config))
    options = RunOptions(only=tuple(only), allow_missing=allow_missing)
    resolution = resolve_for_command(selection, options, os.environ, Reporter(selection),
                                     action="inject")
    values = resolution.values()
    child = build_environment(os.environ, values, profile_label=resolution.profile.label,
                              preserve_env=preserve_env)
    names = [name for name in values if name not in child.preserved]
    for name in names:
        os.environ[name] = values[name]
    os.environ["KEYRUN_PROFILE"] = resolution.profile.label
    return names
