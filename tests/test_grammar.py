"""One grammar, two parsers: command lines generated from ``keyrun.cli.grammar``'s table parse
the same through the fast path (``grammar.route``) and through the Typer app, and the bugs of
the two parsers that disagreed stay fixed (as a real process, with exact outputs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyrun import __version__
from keyrun.cli import app as cli_app
from keyrun.cli import commands, grammar
from keyrun.cli.grammar import (
    COMMANDS,
    GLOBAL_OPTIONS,
    RUN_OPTIONS,
    SCAN_OPTIONS,
    AppCall,
    Option,
    RunCall,
    ScanCall,
)
from keyrun.errors import UsageError
from keyrun.session import Selection
from tests.helpers import dotenv_project, keyrun, write

# An option's value may be a command's name (`-e run`, `-e list`) or look like an option.
VALUES = ("staging", *COMMANDS, "-x", "a b")
COMMAND_LINES = (["prog"], ["prog", "-e", "x", "--mask", "--version", "--"])
AFTER_DASHES = (["prog", "--help"], ["-prog"], ["--", "x"], ["run", "list"])


def spellings(option: Option, value: str) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """Every way to write ``option`` (with ``value``), and what it gives."""
    given = {option.dest: True if option.metavar is None
             else (value,) if option.repeat else value}
    if option.metavar is None:
        yield [option.name], given
        if option.short:
            yield [option.short], given
        return
    yield [option.name, value], given
    yield [f"{option.name}={value}"], given
    if option.short:
        yield [option.short, value], given
        yield [option.short + value], given


def words(options: tuple[Option, ...], values: tuple[str, ...] = VALUES
          ) -> Iterator[tuple[list[str], dict[str, Any]]]:
    for option in options:
        for value in values if option.metavar else ("",):
            yield from spellings(option, value)
    yield from combined(options, values)


def combined(options: tuple[Option, ...], values: tuple[str, ...]
             ) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """Short flags in one word (-qv, -vq), then one that takes a value (-qve dev, -qvedev)."""
    flags = [o for o in options if o.short and o.metavar is None]
    letters = "".join(o.short[1] for o in flags if o.short)
    if not letters:
        return
    given = {o.dest: True for o in flags}
    yield [f"-{letters}"], given
    yield [f"-{letters[::-1]}"], given
    for option in options:
        if option.short and option.metavar:
            for value in values:
                yield [f"-{letters}{option.short[1]}", value], {**given, option.dest: value}
                yield [f"-{letters}{option.short[1]}{value}"], {**given, option.dest: value}


def split(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    globals_ = {o.dest for o in GLOBAL_OPTIONS}
    return ({k: v for k, v in given.items() if k in globals_},
            {k: v for k, v in given.items() if k not in globals_})


def run_forms() -> Iterator[tuple[list[str], list[str], RunCall]]:
    """(argv, the same for Typer, the parse both must give) for the run path."""
    for option_words, given in words((*GLOBAL_OPTIONS, *RUN_OPTIONS)):
        selection, options = split(given)
        is_global = not options
        for command in COMMAND_LINES:
            expected = RunCall(selection, options, command)
            # keyrun [opts] -- CMD is keyrun run [opts] -- CMD (SPEC §3)
            yield [*option_words, "--", *command], ["run", *option_words, "--", *command], expected
            yield ["run", *option_words, "--", *command], None, expected
            yield ["run", *option_words, *command], None, expected
            if is_global:
                yield [*option_words, "run", "--", *command], None, expected
                yield [*option_words, "run", *command], None, expected
        for command in AFTER_DASHES:
            expected = RunCall(selection, options, command)
            yield [*option_words, "--", *command], ["run", *option_words, "--", *command], expected
            yield ["run", *option_words, "--", *command], None, expected


def mixed_forms() -> Iterator[tuple[list[str], list[str], RunCall]]:
    """Several options, before and after `run`, repeated, overriding."""
    command = ["prog", "arg"]
    yield (["-e", "run", "run", "--only", "list", "-q", "--only=run", "--", *command], [],
           RunCall({"env": "run", "quiet": True}, {"only": ("list", "run")}, command))
    yield ["-e", "a", "run", "-e", "b", *command], [], RunCall({"env": "b"}, {}, command)
    yield (["-e", "a", "--env=b", "-c", "list", "--", *command], ["run"],
           RunCall({"env": "b", "config": "list"}, {}, command))
    yield (["-pdoctor", "--mask", "-qv", "--allow-missing", "--", *command], ["run"],
           RunCall({"project": "doctor", "quiet": True, "verbose": True},
                   {"mask": True, "allow_missing": True}, command))
    yield (["-v", "run", "-q", "--clean-env", "--allow-argv-secrets", "-eset", *command], [],
           RunCall({"verbose": True, "quiet": True, "env": "set"},
                   {"clean_env": True, "allow_argv_secrets": True}, command))


class Typer:
    """The Typer app in-process, with the command bodies replaced by recorders."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, Any]] = []
        monkeypatch.setattr(grammar.RunCall, "start", self._record("run"))
        monkeypatch.setattr(grammar.ScanCall, "start", self._record("scan"))
        for name in ("list_command", "doctor_command"):
            monkeypatch.setattr(commands, name, self._record(name.removesuffix("_command")))
        monkeypatch.setattr(commands, "set_command", self._record("set"))
        monkeypatch.setattr(commands, "sources_command", self._record("sources"))

    def _record(self, name: str) -> Any:
        def record(first: Any = None, *args: Any, **kwargs: Any) -> int:
            self.calls.append((name, first))
            return 0

        return record

    def parse(self, args: list[str]) -> tuple[str, Any]:
        """What the command's body got, or ("usage", exit status) for a usage error."""
        self.calls.clear()
        try:
            code = cli_app.run_app(list(args))
        except UsageError as exc:
            return "usage", exc.exit_code
        if self.calls:
            assert code == 0
            [call] = self.calls
            return call
        return "exit", code


@pytest.fixture
def typer_app(monkeypatch: pytest.MonkeyPatch) -> Typer:
    return Typer(monkeypatch)


def test_the_run_path_parses_alike_through_both_routes(typer_app: Typer) -> None:
    mismatches = []
    count = 0
    for argv, for_typer, expected in run_forms():
        count += 1
        fast = grammar.route(argv)
        typer = typer_app.parse(for_typer or argv)
        if fast != expected or typer != ("run", expected):
            mismatches.append((argv, fast, typer, expected))
    for argv, before, expected in mixed_forms():
        count += 1
        fast = grammar.route(argv)
        typer = typer_app.parse([*before, *argv])
        if fast != expected or typer != ("run", expected):
            mismatches.append((argv, fast, typer, expected))
    assert count > 2000
    assert mismatches == []


@pytest.mark.parametrize("command", ["list", "doctor", "set"])
def test_other_commands_take_the_global_options_before_or_after_their_name(
        typer_app: Typer, command: str) -> None:
    name = [command, "KEY"] if command == "set" else [command]
    mismatches = []
    for option_words, given in words(GLOBAL_OPTIONS):
        for argv in ([*option_words, *name], [*name, *option_words]):
            fast = grammar.route(argv)
            typer = typer_app.parse(argv)
            if fast != AppCall(argv) or typer != (command, Selection(**given)):
                mismatches.append((argv, fast, typer))
    assert mismatches == []


@pytest.mark.parametrize("argv", [["sources", "-e", "run", "-qv"], ["-p", "list", "sources"],
                                  ["sources", "--config=doctor"]])
def test_commands_that_ignore_them_still_accept_the_global_options(
        typer_app: Typer, argv: list[str]) -> None:
    assert grammar.route(argv) == AppCall(argv)
    assert typer_app.parse(argv)[0] == "sources"


# scan: the fast path's second command, which a pre-commit hook runs on every commit.

SCAN_DEFAULTS = {o.dest: o.default if o.metavar else False for o in SCAN_OPTIONS}
SCAN_VALUES = {"output": ("text", "json", "sarif"), "baseline": ("b.json", "-x", "scan", "a b")}
PATHS = ([], ["a.py"], ["src", "-"], ["scan", "list"])


def scan_words() -> Iterator[tuple[list[str], dict[str, Any]]]:
    """Every spelling of each of scan's options, then several at once (the last one wins)."""
    for option in SCAN_OPTIONS:
        for value in SCAN_VALUES.get(option.dest, ("",)):
            yield from spellings(option, value)
    yield (["--staged", "--format", "json", "--baseline=b.json"],
           {"staged": True, "output": "json", "baseline": "b.json"})
    yield (["--history", "--update-baseline", "--baseline", "b", "--format=sarif", "--format",
            "text"], {"history": True, "update_baseline": True, "baseline": "b", "output": "text"})


def scan_forms() -> Iterator[tuple[list[str], ScanCall]]:
    """(argv, the parse both routes must give): global and scan options before, among and
    after the paths; every word after ``--`` a path."""
    for option_words, given in words(GLOBAL_OPTIONS):
        for paths in PATHS:
            expected = ScanCall(given, SCAN_DEFAULTS, paths)
            yield [*option_words, "scan", *paths], expected
            yield ["scan", *paths, *option_words], expected
    for option_words, given in scan_words():
        for paths in PATHS:
            expected = ScanCall({}, {**SCAN_DEFAULTS, **given}, paths)
            yield ["scan", *option_words, *paths], expected
            yield ["scan", *paths, *option_words], expected
            yield (["-q", "scan", *paths[:1], *option_words, *paths[1:]],
                   expected._replace(selection={"quiet": True}))
    yield (["scan", "--staged", "--", "--format", "-e", "--help", "--version"],
           ScanCall({}, {**SCAN_DEFAULTS, "staged": True}, ["--format", "-e", "--help",
                                                             "--version"]))
    yield (["-e", "a", "scan", "-e", "b", "-qv", "x", "--", "-"],
           ScanCall({"env": "b", "quiet": True, "verbose": True}, SCAN_DEFAULTS, ["x", "-"]))


def test_scan_parses_alike_through_both_routes(typer_app: Typer) -> None:
    mismatches = []
    count = 0
    for argv, expected in scan_forms():
        count += 1
        fast = grammar.route(argv)
        typer = typer_app.parse(argv)
        if fast != expected or typer != ("scan", expected):
            mismatches.append((argv, fast, typer, expected))
    assert count > 1000
    assert mismatches == []


SCAN_USAGE_ERRORS = [
    ["scan", "--staged", "--history"], ["scan", "--format", "xml"], ["scan", "a", "--format=x"],
    ["scan", "--format"], ["scan", "--baseline"], ["scan", "--baseline", "--", "a"],
    ["scan", "-e"], ["scan", "-qe"], ["scan", "--bogus"], ["scan", "--staged=yes"],
    ["scan", "-qx"], ["scan", "--mask"], ["scan", "--only", "A"], ["--mask", "scan"],
]


@pytest.mark.parametrize("argv", SCAN_USAGE_ERRORS, ids=" ".join)
def test_scan_usage_errors_are_usage_errors_through_both(typer_app: Typer, argv: list[str]
                                                         ) -> None:
    try:
        route = grammar.route(argv)
    except UsageError as exc:
        fast: tuple[str, Any] = ("usage", exc.exit_code)
    else:
        assert isinstance(route, AppCall)  # Typer says what is wrong
        fast = typer_app.parse(route.args)
    assert fast in (("usage", 2), ("exit", 2))
    assert typer_app.parse(argv) in (("usage", 2), ("exit", 2))


@pytest.mark.parametrize(("argv", "message", "hint"), [
    (["scan", "--format", "xml"], "--format xml: not a format", "formats: text, json, sarif"),
    (["-q", "scan", "--staged", "a", "--history"],
     "--staged and --history cannot be used together", ""),
])
def test_scans_own_usage_errors_say_the_same_through_both(argv: list[str], message: str,
                                                          hint: str) -> None:
    with pytest.raises(UsageError) as fast:
        grammar.route(argv)
    with pytest.raises(UsageError) as typer:
        cli_app.run_app(argv)
    assert (fast.value.message, fast.value.hint) == (typer.value.message, typer.value.hint)
    assert (fast.value.message, fast.value.hint or "") == (message, hint)


USAGE_ERRORS = [
    ["-e"], ["run", "-e"], ["-e", "--", "prog"], ["run", "--only"], ["run", "--only", "--", "x"],
    ["run", "-qe"], ["run", "--bogus", "--", "x"], ["run", "-qx", "--", "x"],
    ["run", "--quiet=1", "--", "x"], ["run"], ["run", "-e", "dev"], ["run", "--"], ["--"],
    ["-e", "dev", "--"], ["--mask", "--"], ["run", "--clean-env", "--preserve-env", "--", "x"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=" ".join)
def test_usage_errors_on_the_run_path_are_usage_errors_through_both(
        typer_app: Typer, argv: list[str]) -> None:
    with pytest.raises(UsageError):
        grammar.route(argv)
    typer_form = argv if argv[:1] == ["run"] else ["run", *argv]
    assert typer_app.parse(typer_form) in (("usage", 2), ("exit", 2))


@pytest.mark.parametrize("argv", [
    ["--version"], ["-e", "run", "--version"], ["--version", "run"], ["run", "--version"],
    ["run", "-q", "--version", "--", "prog"], ["--mask", "--version", "--", "prog"],
    ["-qv", "--version", "list"], ["list", "--version"], ["list", "-e", "run", "--version"],
    ["set", "KEY", "--version"], ["sources", "--version"], ["scan", "--version"],
    ["-q", "scan", "a", "--staged", "--version"], ["--version", "scan", "--staged"],
], ids=" ".join)
def test_version_anywhere_before_the_command_line(
        typer_app: Typer, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    route = grammar.route(argv)
    assert isinstance(route, AppCall)
    assert typer_app.parse(route.args) == ("exit", 0)
    assert capsys.readouterr().out == f"keyrun {__version__}\n"


@pytest.mark.parametrize(("argv", "usage"), [
    (["--help"], "keyrun [OPTIONS] COMMAND"), (["-h"], "keyrun [OPTIONS] COMMAND"),
    (["-e", "run", "--help"], "keyrun [OPTIONS] COMMAND"),
    (["--help", "list"], "keyrun [OPTIONS] COMMAND"),
    (["-e", "dev", "--help", "--", "prog"], "keyrun [OPTIONS] COMMAND"),
    (["run", "--help"], "keyrun run [OPTIONS] [--] COMMAND"),
    (["-e", "list", "run", "-q", "-h"], "keyrun run [OPTIONS] [--] COMMAND"),
    (["list", "--help"], "keyrun list [OPTIONS]"), (["-e", "run", "list", "-h"], "keyrun list"),
    (["init", "-h"], "keyrun init [OPTIONS]"),
    (["scan", "--help"], "keyrun scan [OPTIONS] [PATH]..."),
    (["-e", "dev", "scan", "a", "--staged", "-h"], "keyrun scan [OPTIONS] [PATH]..."),
    (["--help", "scan", "--staged"], "keyrun [OPTIONS] COMMAND"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_help_where_it_stands(typer_app: Typer, argv: list[str], usage: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert grammar.route(argv) == AppCall(argv)
    assert typer_app.parse(argv) == ("exit", 0)
    assert capsys.readouterr().out.startswith(f"Usage: {usage}")


def test_after_the_command_starts_every_word_is_its_own() -> None:
    for argv, command in ((["-e", "dev", "--", "prog", "--help"], ["prog", "--help"]),
                          (["run", "prog", "--version"], ["prog", "--version"]),
                          (["run", "-q", "list", "-e", "run"], ["list", "-e", "run"]),
                          (["--", "run", "--", "x"], ["run", "--", "x"])):
        route = grammar.route(argv)
        assert isinstance(route, RunCall)
        assert route.command == command


@pytest.mark.parametrize(("argv", "message"), [
    (["lst"], "no such command: lst"), (["-e", "run", "python", "x"], "no such command: python"),
    (["-q", "doctr"], "no such command: doctr"),
])
def test_a_word_where_a_command_stands_must_be_one(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        grammar.route(argv)


def test_what_the_table_does_not_know_goes_to_typer_to_report() -> None:
    for argv in (["--bogus"], ["-x", "--", "true"], ["--mask"], ["--mask", "list"],
                 ["-e", "dev"], []):
        assert grammar.route(argv) == AppCall(argv)


def test_the_typer_app_is_built_from_the_table() -> None:
    import typer.main

    root = typer.main.get_command(cli_app.app)
    assert set(root.commands) == set(COMMANDS)  # type: ignore[attr-defined]

    def commands_in(group: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a command group (keyrun mcp scan|protect)
                yield from commands_in(command, f"{path}{name} ")
            else:
                yield f"{path}{name}", command

    def declared(params: list[Any]) -> dict[str, tuple[tuple[str, ...], bool, bool]]:
        return {p.name: (tuple(sorted(p.opts)), p.is_flag, bool(p.multiple))
                for p in params if p.param_type_name == "option"}

    def expected(options: tuple[Option, ...]) -> dict[str, tuple[tuple[str, ...], bool, bool]]:
        return {o.dest: (tuple(sorted(n for n in (o.name, o.short) if n)), o.metavar is None,
                         o.repeat) for o in options}

    for name, command in [("", root), *commands_in(root, "")]:
        params = declared(command.params)
        assert expected(GLOBAL_OPTIONS).items() <= params.items(), name
        assert ("--version",) in [opts for opts, _, _ in params.values()], name
        assert (expected(RUN_OPTIONS).items() <= params.items()) == (name == "run"), name
        assert (expected(SCAN_OPTIONS).items() <= params.items()) == (name == "scan"), name


# Real processes: the three bugs of two parsers, with exact outputs.

SHOW = "import os; print(os.environ['A_KEY'])"
RUN_ENV = '[sources.run]\ntype = "dotenv"\npath = ".env.run"\n[env.run]\nsources = ["run"]\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Project bot: environment dev (the default) and one named run, each with its A_KEY."""
    root = dotenv_project(tmp_path / "bot", {"A_KEY": "dev-value"}, extra=RUN_ENV)
    write(root / ".env.run", "A_KEY=run-value\n")
    return root


def test_an_environment_named_run_works_with_every_command(project: Path, env: dict[str, str]
                                                          ) -> None:
    for argv in (["list", "-e", "run"], ["-e", "run", "list"], ["list", "--env=run"]):
        done = keyrun(argv, cwd=project, env=env)
        assert (done.returncode, done.stderr) == (0, ""), argv
        assert done.stdout.splitlines()[0] == "project bot, environment run"
    done = keyrun(["-e", "run", "--", sys.executable, "-c", SHOW], cwd=project, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "run-value\n", "")


def test_combined_short_flags_before_the_command(project: Path, env: dict[str, str]) -> None:
    for argv in (["-qv", "--", sys.executable, "-c", SHOW],
                 ["run", "-qv", "--", sys.executable, "-c", SHOW],
                 ["-qverun", "--", sys.executable, "-c", SHOW]):
        done = keyrun(argv, cwd=project, env=env)
        env_name, source = ("run", "run") if "-qverun" in argv else ("dev", "local")
        assert (done.returncode, done.stdout, done.stderr) == (
            0, f"{env_name}-value\n", f"keyrun: config: {project / 'keyrun.toml'} (profile "
            f"bot/{env_name})\nkeyrun: A_KEY from {source}\n"), argv


def test_usage_errors_exit_2_with_the_fast_paths_words(project: Path, env: dict[str, str]
                                                       ) -> None:
    cases = {
        ("run", "-qx", "--", "true"): "keyrun: error: no such option for run: -qx\n"
                                      "  hint: see: keyrun run --help\n",
        ("list", "-e"): "keyrun: error: option --env needs a value\n"
                        "  hint: e.g. keyrun list -e staging\n",
        ("-e", "run", "lst"): "keyrun: error: no such command: lst\n  hint: did you mean "
                              "`keyrun list`? to run a program with the profile's keys: "
                              "keyrun [-e ENV] -- lst …\n",
        ("run", "-e", "list"): "keyrun: error: no command given\n"
                               "  hint: run a command as: keyrun [-e ENV] -- COMMAND [ARGS…]\n",
    }
    for argv, stderr in cases.items():
        done = keyrun(argv, cwd=project, env=env)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", stderr), argv
