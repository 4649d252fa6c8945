"""A pytest plugin: load a keyrun profile for the whole test session (SPEC §6).

    pytest --keyrun-env staging            # or, in the ini file: keyrun_env = staging

The profile is resolved once, before collection, with the same rules as ``keyrun run``
(profile values override inherited ones, ``KEYRUN_PROFILE`` names the profile); the
environment is restored and leased credentials are revoked when the session ends. A
missing required key stops the session with keyrun's own message. The ``keyrun_secrets``
fixture returns the resolved mapping (loading the default environment on first use when
no environment was named), whose ``repr`` names the keys only; and pytest's reports show
``<KEY_NAME>`` wherever they would show a value keyrun handed to this session (through the
fixture, ``--keyrun-env``, or ``keyrun.load``/``inject`` called by a test), as ``keyrun run
--mask`` does, so that CI logs never hold them: a failing test's traceback, locals and
assertion diffs, the captured output ``-rP`` shows, a module that failed to import, and the
warnings summary.

keyrun.toml is ``--keyrun-config`` (relative to the directory pytest was started in), else
``keyrun_config`` in the ini file (relative to that file), else ``$KEYRUN_CONFIG``, else
found in the rootdir or its nearest parent; without one, the rootdir is the project.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    from _pytest.reports import CollectReport, TestReport
    from pluggy import Result

    from keyrun.mask import MaskSet
    from keyrun.resolve import Resolution

_STATE = pytest.StashKey[dict[str, str]]()
_SEEN = pytest.StashKey[list[dict[str, str]]]()  # every profile's values keyrun handed out
_MASKS: pytest.StashKey[list[tuple[dict[str, str], MaskSet]]] = pytest.StashKey()
_UNWATCH = pytest.StashKey["Callable[[], None]"]()
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
    from keyrun.values import watch

    seen: list[dict[str, str]] = []

    def note(values: Mapping[str, str]) -> None:
        if values and values not in seen:
            seen.append(dict(values))

    config.stash[_SEEN] = seen
    config.stash[_UNWATCH] = watch(note)
    config.pluginmanager.register(_WarningMasker(config), "keyrun-warnings")
    env = _setting(config, "env")
    if env is None:
        return
    _load_for_session(config, env)


def _load_for_session(config: pytest.Config, env: str) -> None:
    from keyrun.api import set_environ

    resolution = _resolve(config, env, for_environ=True)
    config.stash[_SAVED] = dict(os.environ)
    set_environ(resolution, preserve_env=False)
    config.stash[_STATE] = resolution.values()


def pytest_unconfigure(config: pytest.Config) -> None:
    unwatch = config.stash.get(_UNWATCH, None)
    if unwatch is not None:
        unwatch()
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
    _mask_report(outcome.get_result(), item.config)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, Result[CollectReport], None]:
    outcome = yield  # a module that fails to import shows its traceback, locals and all
    _mask_report(outcome.get_result(), collector.config)


class _WarningMasker:
    """The warnings summary shows each warning's text: a value in it is replaced too
    (pytest_warning_recorded is not handed the config, so this plugin object holds it)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage) -> None:
        mask = _masker(self.config)
        if mask is None:
            return
        text = str(warning_message.message)
        masked = mask(text)
        if masked != text:
            try:
                warning_message.message = warning_message.category(masked)
            except Exception:  # a warning class that takes other arguments
                warning_message.message = UserWarning(masked)


def _masker(config: pytest.Config) -> Callable[[str], str] | None:
    """What replaces, in a text, every value keyrun handed to this session and their common
    encodings with ``<KEY_NAME>``; None while it handed out none."""
    seen = config.stash.get(_SEEN, [])
    if not seen:
        return None
    compiled = config.stash.setdefault(_MASKS, [])
    if len(compiled) < len(seen):
        from keyrun.mask import MaskSet

        compiled.extend((values, MaskSet(values)) for values in seen[len(compiled):])

    def mask(text: str) -> str:
        for values, masks in compiled:
            text = masks.mask(text.encode("utf-8", "surrogateescape")).decode(
                "utf-8", "surrogateescape")
            text = _mask_shortened(text, values)
        return text

    return mask


def _mask_report(report: TestReport | CollectReport, config: pytest.Config) -> None:
    """Values keyrun handed out replaced in a report: a failure's text (traceback, locals,
    assertion diffs) and every report's captured output, which ``-rP`` shows for tests that
    passed; a report that shows none is left as it is (colours and all)."""
    mask = _masker(config)
    if mask is None:
        return
    if report.failed:
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

