"""A pytest plugin: load a keyrun profile for the whole test session (SPEC §6).

    pytest --keyrun-env staging            # or, in the ini file: keyrun_env = staging

The profile is resolved once, before collection, with the same rules as ``keyrun run``
(profile values override inherited ones); the environment is restored when the session
ends. A missing required key stops the session with keyrun's own message. The
``keyrun_secrets`` fixture returns the resolved mapping (loading the default environment
on first use when no environment was named).
"""

from __future__ import annotations

import os

import pytest

_STATE = pytest.StashKey[dict[str, str]]()
_SAVED = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keyrun", "keyrun: secrets for the test session")
    group.addoption("--keyrun-env", metavar="ENV", default=None,
                    help="load this keyrun environment into os.environ for the session")
    group.addoption("--keyrun-config", metavar="PATH", default=None,
                    help="the keyrun.toml to use (default: found upward from the rootdir)")
    parser.addini("keyrun_env", "keyrun environment to load for the session", default="")
    parser.addini("keyrun_config", "keyrun.toml to use", default="")


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--keyrun-{name}") or config.getini(f"keyrun_{name}")
    return str(value) if value else None


def _load(config: pytest.Config, env: str | None) -> dict[str, str]:
    from keyrun.api import load
    from keyrun.errors import KeyrunError

    path = _setting(config, "config")
    if path is not None and not os.path.isabs(path):
        path = str(config.rootpath / path)
    try:
        return load(env, config=path)
    except KeyrunError as exc:
        hint = f"\n  hint: {exc.hint}" if exc.hint else ""
        raise pytest.UsageError(f"keyrun: {exc.message}{hint}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    env = _setting(config, "env")
    if env is None:
        return
    values = _load(config, env)
    config.stash[_SAVED] = dict(os.environ)
    os.environ.update(values)
    os.environ.setdefault("KEYRUN_PROFILE", env)
    config.stash[_STATE] = values


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = config.stash.get(_SAVED, None)
    if saved is None:
        return
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def keyrun_secrets(pytestconfig: pytest.Config) -> dict[str, str]:
    """The session's keyrun values: ``{name: value}``."""
    values = pytestconfig.stash.get(_STATE, None)
    if values is None:
        values = _load(pytestconfig, None)
        pytestconfig.stash[_STATE] = values
    return dict(values)
