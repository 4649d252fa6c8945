"""The command line's grammar: one table of the global options, run's and scan's options and
the command names, from which both parsers are built. ``route`` is the fast path's parser
(``keyrun [opts] -- CMD``, ``keyrun run …`` and ``keyrun scan …`` start without Typer or
rich: scan runs in every pre-commit hook); ``keyrun.cli.app`` declares the same options to
Typer for every other command, for --help and for shell completion.

The route is chosen by position: the first word that is neither an option nor an option's
value is the command name, and only there is a word a command. Cheap to import: no Typer,
and no ``from __future__ import annotations``, under which NamedTuple compiles every field's
annotation from its string (2 ms of each start for these three classes).
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

from keyrun.errors import UsageError


class Option(NamedTuple):
    name: str  # the long form, e.g. --env
    short: str | None  # e.g. -e
    dest: str  # the field of keyrun.run.Selection (global) or RunOptions (run) it sets
    metavar: str | None  # what its value is; None: a flag, which takes no value
    help: str
    example: str = ""  # for the hint when its value is missing
    repeat: bool = False  # each use adds a value (--only A --only B)
    completes: str = ""  # what the shell completes its value with: "envs" or "keys"
    default: str | None = None  # an option's value when it is not given (None: no value)


_GIVE_ENV = "keyrun list -e staging"
GLOBAL_OPTIONS = (
    Option("--env", "-e", "env", "ENV", "Environment (default: $KEYRUN_ENV, else default_env).",
           _GIVE_ENV, completes="envs"),
    Option("--project", "-p", "project", "NAME", "Override the project name used in {project}.",
           _GIVE_ENV),
    Option("--config", "-c", "config", "PATH",
           "keyrun.toml to use (default: $KEYRUN_CONFIG, else found upward from here).",
           _GIVE_ENV),
    Option("--quiet", "-q", "quiet", None, "Only errors on stderr."),
    Option("--verbose", "-v", "verbose", None,
           "Say which config file, hosts and source of each key are used."),
)
RUN_OPTIONS = (
    Option("--only", None, "only", "KEY", "Fetch and pass only this key (repeatable).",
           "--only OPENAI_API_KEY", repeat=True, completes="keys"),
    Option("--allow-missing", None, "allow_missing", None,
           "Run even if required keys are missing (warns)."),
    Option("--preserve-env", None, "preserve_env", None,
           "A variable already set in this shell wins."),
    Option("--clean-env", None, "clean_env", None,
           "Pass only the keys plus PATH, HOME, USER, LANG, TERM, TZ and the like."),
    Option("--allow-argv-secrets", None, "allow_argv_secrets", None,
           "Allow a secret value inside the command's arguments."),
    Option("--mask", None, "mask", None, "Replace every secret value (and its common encodings) "
           "in the command's output with <KEY_NAME>."),
)
SCAN_FORMATS = ("text", "json", "sarif")
SCAN_OPTIONS = (
    Option("--staged", None, "staged", None,
           "Scan what the next commit adds: the index, not the working copy."),
    Option("--history", None, "history", None,
           "Scan every commit (lines each one added), reporting the commit id."),
    Option("--format", None, "output", "|".join(SCAN_FORMATS), "Output format.",
           "keyrun scan --format json", default=SCAN_FORMATS[0]),
    Option("--baseline", None, "baseline", "FILE", "Skip the findings this baseline accepts; "
           "a FILE that does not exist yet is created with every current finding.",
           "keyrun scan --baseline .keyrun-baseline.json"),
    Option("--update-baseline", None, "update_baseline", None,
           "Add this scan's findings to the baseline instead of failing on them."),
)
HELP = ("-h", "--help")
VERSION = "--version"
RUN = "run"
SCAN = "scan"
# Every command name: a word at the command's position must be one of them (or start the
# run path). A new command is a name here and its function in keyrun.cli.app.
COMMANDS = (RUN, "list", "doctor", "set", "init", "log", SCAN, "sources", "trust", "mcp")
RUN_USAGE = "run a command as: keyrun [-e ENV] -- COMMAND [ARGS…]"

_OPTIONS = {name: option for option in (*GLOBAL_OPTIONS, *RUN_OPTIONS)
            for name in (option.name, option.short) if name}
_GLOBAL_DESTS = frozenset(option.dest for option in GLOBAL_OPTIONS)
_SCAN_WORDS = {name: option for option in (*GLOBAL_OPTIONS, *SCAN_OPTIONS)
               for name in (option.name, option.short) if name}


class RunCall(NamedTuple):
    """``keyrun [opts] -- CMD…`` or ``keyrun [opts] run [opts] [--] CMD…``: the options given
    (by dest: Selection's fields in ``selection``, RunOptions' in ``options``) and CMD…."""

    selection: dict[str, Any]
    options: dict[str, Any]
    command: list[str]

    def start(self) -> int:
        """Run it: the fast path's call, or the Typer app's."""
        from keyrun.run import RunOptions, run_command
        from keyrun.session import Selection

        return run_command(self.command, Selection(**self.selection),
                           RunOptions(**self.options))


class ScanCall(NamedTuple):
    """``keyrun [opts] scan [opts] [PATH…]``: the global options given (by dest, for
    Selection), every scan option (by dest: given, else its default) and the paths."""

    selection: dict[str, Any]
    options: dict[str, Any]
    paths: list[str]

    def start(self) -> int:
        """Run it: the fast path's call, or the Typer app's."""
        from keyrun.cli.scan import scan_command
        from keyrun.session import Selection

        return scan_command(Selection(**self.selection), self.paths, **self.options)


class AppCall(NamedTuple):
    """Every other command line: the arguments for the Typer app."""

    args: list[str]


def find(name: str) -> Option | None:
    """The global or run option spelled ``name`` (``-e``, ``--env``)."""
    return _OPTIONS.get(name)


def needs_value(option: Option) -> UsageError:
    return UsageError(f"option {option.name} needs a value", f"e.g. {option.example}")


def route(argv: Sequence[str]) -> RunCall | ScanCall | AppCall:
    """Which parser gets ``argv``; for the run path and scan, the parse itself.

    Before the command name stand the global options (and run's, when ``--`` follows);
    after ``run``, both until the first plain word or ``--``, where CMD starts; after
    ``scan``, the global and scan's options among the paths. ``--help`` there goes to Typer,
    ``--version`` prints the version. Anything else goes to Typer as given, including an
    option this table does not know, which Typer reports.
    """
    args = list(argv)
    given: dict[str, Any] = {}
    in_run = wants_help = wants_version = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return _run(args, given, args[i + 1 :], wants_help, wants_version)
        if arg in HELP:
            wants_help = True
        elif arg == VERSION:
            wants_version = True
        elif arg.startswith("-") and arg != "-":
            after = _take(args, i, given)
            if after is None:
                if in_run:
                    raise UsageError(f"no such option for run: {arg}", "see: keyrun run --help")
                return AppCall(args)
            i = after
            continue
        elif in_run:
            return _run(args, given, args[i:], wants_help, wants_version)
        elif not given.keys() <= _GLOBAL_DESTS:  # run's options stand here only before `--`
            break
        elif arg == RUN:
            in_run = True
        elif arg == SCAN and not (wants_help or wants_version):
            return _scan(args, i + 1, given)
        elif arg in COMMANDS:
            break
        else:
            raise _no_such_command(arg)
        i += 1
    if in_run:
        return _run(args, given, [], wants_help, wants_version)
    return AppCall([VERSION] if wants_version else args)


def run_call(selection: dict[str, Any], options: dict[str, Any], command: list[str]) -> RunCall:
    """The run path's own usage checks, for either parser."""
    if not command:
        raise UsageError("no command given", RUN_USAGE)
    if options.get("preserve_env") and options.get("clean_env"):
        raise UsageError("--preserve-env and --clean-env cannot be used together")
    return RunCall(selection, options, command)


def scan_call(selection: dict[str, Any], options: dict[str, Any], paths: list[str]
              ) -> ScanCall:
    """Scan's own usage checks, for either parser; the options not given get their
    defaults."""
    every = {option.dest: option.default if option.metavar else False
             for option in SCAN_OPTIONS} | options
    if every["output"] not in SCAN_FORMATS:
        raise UsageError(f"--format {every['output']}: not a format",
                         f"formats: {', '.join(SCAN_FORMATS)}")
    if every["staged"] and every["history"]:
        raise UsageError("--staged and --history cannot be used together")
    return ScanCall(selection, every, paths)


def _scan(args: list[str], i: int, given: dict[str, Any]) -> ScanCall | AppCall:
    """The words after ``scan`` (from ``args[i]``), as click reads them: options anywhere
    before ``--``, every other word a path. Help, the version, an option this table does
    not know and an option without its value go to Typer, which says what is wrong."""
    paths: list[str] = []
    while i < len(args):
        arg = args[i]
        if arg == "--":
            paths += args[i + 1 :]
            break
        if arg in HELP or arg == VERSION:
            return AppCall(args)
        if arg.startswith("-") and arg != "-":
            try:
                after = _take(args, i, given, _SCAN_WORDS)
            except UsageError:
                return AppCall(args)
            if after is None:
                return AppCall(args)
            i = after
            continue
        paths.append(arg)
        i += 1
    selection = {dest: value for dest, value in given.items() if dest in _GLOBAL_DESTS}
    options = {dest: value for dest, value in given.items() if dest not in _GLOBAL_DESTS}
    return scan_call(selection, options, paths)


def _run(args: list[str], given: dict[str, Any], command: list[str], wants_help: bool,
         wants_version: bool) -> RunCall | AppCall:
    if wants_version:
        return AppCall([VERSION])
    if wants_help:
        return AppCall(args)
    selection = {dest: value for dest, value in given.items() if dest in _GLOBAL_DESTS}
    options = {dest: value for dest, value in given.items() if dest not in _GLOBAL_DESTS}
    return run_call(selection, options, command)


def _take(args: list[str], i: int, given: dict[str, Any],
          table: dict[str, Option] = _OPTIONS) -> int | None:
    """Read the option at ``args[i]`` (``--env dev``, ``--env=dev``, ``-e dev``, ``-edev``,
    ``-qv``, ``-qve dev``) into ``given``; the index after it, or None when it is not one of
    ``table``'s."""
    arg = args[i]
    found: list[tuple[Option, Any]] = []
    if arg.startswith("--"):
        name, eq, inline = arg.partition("=")
        option = table.get(name)
        if option is None or (eq and option.metavar is None):
            return None
        if option.metavar is None:
            found.append((option, True))
        elif eq:
            found.append((option, inline))
        else:
            found.append((option, _value_after(args, i, option)))
            i += 1
    else:
        for at, letter in enumerate(arg[1:], start=2):
            option = table.get(f"-{letter}")
            if option is None:
                return None
            if option.metavar is None:
                found.append((option, True))
                continue
            if at < len(arg):
                found.append((option, arg[at:]))
            else:
                found.append((option, _value_after(args, i, option)))
                i += 1
            break
    for option, value in found:
        given[option.dest] = (*given.get(option.dest, ()), value) if option.repeat else value
    return i + 1


def _value_after(args: list[str], i: int, option: Option) -> str:
    if i + 1 >= len(args) or args[i + 1] == "--":
        raise needs_value(option)
    return args[i + 1]


def _no_such_command(word: str) -> UsageError:
    """A program name where a command belongs: say how to run it instead."""
    import difflib

    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"did you mean `keyrun {close[0]}`? " if close else ""
    return UsageError(f"no such command: {word}", f"{hint}to run a program with the profile's "
                      f"keys: keyrun [-e ENV] -- {word} …")
