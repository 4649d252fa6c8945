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
    from keyrun.api import inject, load, release

_API = frozenset({"inject", "load", "release"})


def __getattr__(name: str) -> object:
    """``load``, ``inject`` and ``release`` are :mod:`keyrun.api`'s, imported when first
    used: ``import keyrun`` stays as cheap as the run path needs."""
    if name not in _API:
        raise AttributeError(f"module 'keyrun' has no attribute {name!r}")
    from keyrun import api

    found = getattr(api, name)
    globals()[name] = found
    return found


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext keyrun``: registers the ``%keyrun`` magic."""
    from keyrun.ipython import register

    register(ipython)
