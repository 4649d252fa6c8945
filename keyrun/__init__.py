"""keyrun: run any command with the secrets it needs, fetched at start-up from where they live.

The package is importable as a library; everything here is lazy so that
``keyrun -- cmd`` pays only for what the run path needs (the errors are a small module of
their own, which every command loads anyway). Every expected failure is a
:class:`KeyrunError` (a message and a hint), or one of its subclasses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keyrun.errors import (
    ConfigError,
    KeyrunError,
    LaunchError,
    MissingSdkError,
    ResolutionError,
    SourceError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = ["ConfigError", "KeyrunError", "LaunchError", "MissingSdkError", "ResolutionError",
           "SourceError", "UsageError", "__version__", "inject", "load",
           "load_ipython_extension", "release"]

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


def load(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
) -> dict[str, str]:
    """Resolve the profile and return every key's value, as ``run`` would inject them."""
    from keyrun.api import load as _load

    return _load(env, config=config, project=project, only=only, allow_missing=allow_missing)


def inject(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
    preserve_env: bool = False,
) -> list[str]:
    """Resolve the profile and set its keys in ``os.environ``; return the names set.

    Profile values replace inherited ones, as in ``keyrun run``; ``preserve_env=True``
    keeps a variable that is already set.
    """
    from keyrun.api import inject as _inject

    return _inject(
        env,
        config=config,
        project=project,
        only=only,
        allow_missing=allow_missing,
        preserve_env=preserve_env,
    )


def release() -> None:
    """Revoke now what ``load``/``inject`` leased (dynamic Vault credentials), rather than
    at interpreter exit; a failed revocation is a warning on stderr."""
    from keyrun.api import release as _release

    _release()


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext keyrun``: registers the ``%keyrun`` magic."""
    from keyrun.ipython import register

    register(ipython)
