"""A pytest plugin: load a keyrun profile for the whole test session (SPEC §6).

    pytest --keyrun-env staging            # or, in the ini file: keyrun_env = staging

The profile is resolved once, before collection, with the same rules as ``keyrun run``
(profile values override inherited ones, ``KEYRUN_PROFILE`` names the profile); the
environment is restored and leased credentials are revoked when the session ends. A
missing required key stops the session with keyrun's own message. The ``keyrun_secrets``
fixture returns the resolved mapping (loading the default environment on first use when
no environment was named), whose ``repr`` names the keys only; and a failing test's report
(its traceback, locals, assertion diffs and captured output) shows ``<KEY_NAME>`` wherever
it would show one of the session's values, as ``keyrun run --mask`` does, so that CI logs
never hold them.

keyrun.toml is ``--keyrun-config`` (relative to the directory pytest was started in), else
``keyrun_config`` in the ini file (relative to that file), else ``$KEYRUN_CONFIG``, else
found in the rootdir or its nearest parent; without one, the rootdir is the project.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator

    from _pytest.reports import TestReport
    from pluggy import Result

    from keyrun.mask import MaskSet
    from keyrun.resolve import Resolution

_STATE = pytest.StashKey[dict[str, str]]()
_MASKS: pytest.StashKey[MaskSet] = pytest.StashKey()
_SAVED = pytest.StashKey[dict[str, str]]()
_HELD = pytest.StashKey[list["Resolution"]]()

ALLOW_MISSING = "--keyrun-allow-missing"  # or keyrun_allow_missing = true in the ini


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keyrun", "keyrun: secrets for the test session")
    group.addoption("--keyrun-env", metavar="ENV", default=None,
                    help="load this keyrun environment into os.environ for the session")
    group.addoption("--keyrun-config", metavar="PATH", default=None,
                    help="the keyrun.toml to use, relative to the current directory "
                         "(default: $KEYRUN_CONFIG, else found upward from the rootdir)")
    group.addoption("--keyrun-allow-missing", action="store_true", default=False,
                    help="load the profile even if required keys are missing (warns)")
    parser.addini("keyrun_env", "keyrun environment to load for the session", default="")
    parser.addini("keyrun_config", "keyrun.toml to use, relative to the ini file", default="")
    parser.addini("keyrun_allow_missing", "load even if required keys are missing",
                  type="bool", default=False)


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--keyrun-{name}") or config.getini(f"keyrun_{name}")
    return str(value) if value else None


def config_file(config: pytest.Config) -> Path | None:
    """The keyrun.toml this session uses, or None for keyrun's zero-config mode."""
    from keyrun.config import find_config

    named, base, origin = _named_config(config)
    if named is None:
        return find_config(config.rootpath, None, {})
    path = Path(os.path.normpath(base / named))
    if path.is_dir():
        path = path / "keyrun.toml"
    if not path.is_file():
        raise pytest.UsageError(
            f"keyrun: {path}: no such configuration file (named by {origin})\n"
            f"  hint: check the path (relative to {base}), or run `keyrun init` there")
    return path


def _named_config(config: pytest.Config) -> tuple[str | None, Path, str]:
    option = config.getoption("--keyrun-config")
    if option:
        return str(option), config.invocation_params.dir, "--keyrun-config"
    ini = config.getini("keyrun_config")
    if ini:
        inifile = config.inipath
        base = inifile.parent if inifile is not None else config.rootpath
        return str(ini), base, f"keyrun_config in {inifile or 'the ini file'}"
    environ = os.environ.get("KEYRUN_CONFIG")
    return environ or None, config.invocation_params.dir, "KEYRUN_CONFIG"


def _resolve(config: pytest.Config, env: str | None, *, for_environ: bool) -> Resolution:
    from keyrun.api import resolve
    from keyrun.errors import KeyrunError

    try:
        resolution = resolve(
            env, config=config_file(config), cwd=config.rootpath, action="pytest",
            allow_missing=bool(config.getoption("--keyrun-allow-missing")
                               or config.getini("keyrun_allow_missing")),
            allow_missing_spelling=ALLOW_MISSING, for_environ=for_environ)
    except KeyrunError as exc:
        hint = f"\n  hint: {exc.hint}" if exc.hint else ""
        raise pytest.UsageError(f"keyrun: {exc.message}{hint}") from None
    config.stash.setdefault(_HELD, []).append(resolution)
    return resolution


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    from keyrun.api import set_environ

    env = _setting(config, "env")
    if env is None:
        return
    resolution = _resolve(config, env, for_environ=True)
    config.stash[_SAVED] = dict(os.environ)
    set_environ(resolution, preserve_env=False)
    config.stash[_STATE] = resolution.values()


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = config.stash.get(_SAVED, None)
    if saved is not None:
        os.environ.clear()
        os.environ.update(saved)
    held = config.stash.get(_HELD, [])
    if held:
        from keyrun.api import release_resolution

        for resolution in held:
            release_resolution(resolution)
        held.clear()


@pytest.fixture(scope="session")
def keyrun_secrets(pytestconfig: pytest.Config) -> dict[str, str]:
    """The session's keyrun values: ``{name: value}``, shown as names only."""
    from keyrun.values import Values

    values = pytestconfig.stash.get(_STATE, None)
    if values is None:
        values = _resolve(pytestconfig, None, for_environ=False).values()
        pytestconfig.stash[_STATE] = values
    return Values(values)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Result[TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.config.stash.get(_STATE, None):
        _mask_report(report, item.config)


def _mask_report(report: TestReport, config: pytest.Config) -> None:
    """The session's values, and their common encodings, replaced by ``<KEY_NAME>`` in a
    failed test's report; a report that shows none is left as it is (colours and all)."""
    values: dict[str, str] = config.stash[_STATE]
    masks = config.stash.get(_MASKS, None)
    if masks is None:
        from keyrun.mask import MaskSet

        masks = MaskSet(values)
        config.stash[_MASKS] = masks

    def mask(text: str) -> str:
        masked = masks.mask(text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape")
        return _mask_shortened(masked, values)

    text = str(report.longrepr)
    masked = mask(text)
    if masked != text:
        report.longrepr = masked
    report.sections = [(title, mask(content)) for title, content in report.sections]


SHORTENED_SHOWS = 8  # characters of a value around pytest's "..." that are masked


def _mask_shortened(text: str, values: dict[str, str]) -> str:
    """A value pytest shortened in a repr (``'sk-proj-a...9f3b'``: its start, ``...``, its
    end) replaced by ``<KEY_NAME>`` as a whole value is."""
    pieces = text.split("...")
    if len(pieces) == 1:
        return text
    out = [pieces[0]]
    for after in pieces[1:]:
        before = out[-1]
        for name, value in values.items():
            if len(value) < SHORTENED_SHOWS:
                continue
            start = next((n for n in range(len(value) - 1, 0, -1)
                          if before.endswith(value[:n])), 0)
            end = next((n for n in range(len(value) - 1, 0, -1)
                        if after.startswith(value[len(value) - n:])), 0)
            if start and end and start + end >= SHORTENED_SHOWS:
                out[-1] = before[: len(before) - start] + f"<{name}>"
                out.append(after[end:])
                break
        else:
            out.append("..." + after)
    return "".join(out)

