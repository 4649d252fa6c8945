"""The Typer application: every command except the fast ``run`` path (see ``keyrun.cli``).

Global and run options are not declared here but taken from ``keyrun.cli.grammar``, the table
the fast path parses with: ``_command`` adds them to each command's own parameters.
"""

from __future__ import annotations

import functools
import inspect
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from keyrun import __version__
from keyrun.cli import grammar, render
from keyrun.cli.completion import KeyrunGroup, RunCommand, plain_arguments
from keyrun.errors import Terminated, UsageError
from keyrun.session import Selection

app = typer.Typer(
    name="keyrun",
    help="Run any command with the secrets it needs, fetched at start-up from where they live.\n\n"
    "Example: keyrun -e staging -- python agent.py",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # they print locals, and locals hold secrets
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=KeyrunGroup,  # `keyrun -- <TAB>` completes programs
)


def _given(ctx: typer.Context, name: str) -> str | None:
    """A global option's value as typed so far, after the command name or before it."""
    current: Any = ctx
    while current is not None:
        value = current.params.get(name)
        if isinstance(value, str):
            return value
        current = current.parent
    return None


def _complete_envs(ctx: typer.Context, incomplete: str) -> list[str]:
    from keyrun.cli.commands import complete_envs

    return complete_envs(incomplete, config=_given(ctx, "config"))


def _complete_keys(ctx: typer.Context, incomplete: str) -> list[str]:
    from keyrun.cli.commands import complete_keys

    return complete_keys(incomplete, env=_given(ctx, "env"), config=_given(ctx, "config"))


_COMPLETIONS = {"envs": _complete_envs, "keys": _complete_keys}


def _version(value: bool) -> None:
    if value:
        print(f"keyrun {__version__}")
        raise typer.Exit()


def _a_value(option: grammar.Option) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if "--" in (value if isinstance(value, list) else [value]):  # `list -e -- …`: no value
            raise grammar.needs_value(option)
        return value

    return check


def _parameter(option: grammar.Option, *, hidden: bool = False,
               help_text: str | None = None) -> inspect.Parameter:
    """``option`` of the grammar as a Typer parameter."""
    names = [name for name in (option.short, option.name) if name]
    info = typer.Option(*names, metavar=option.metavar, help=help_text or option.help,
                        hidden=hidden, autocompletion=_COMPLETIONS.get(option.completes),
                        callback=None if option.metavar is None else _a_value(option))
    kind: Any = bool if option.metavar is None else list[str] | None if option.repeat \
        else str | None
    default = False if option.metavar is None else option.default
    return inspect.Parameter(option.dest, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, info])


def _version_parameter(*, hidden: bool) -> inspect.Parameter:
    """--version: shown before the command name, accepted after it too."""
    info = typer.Option(grammar.VERSION, callback=_version, is_eager=True, hidden=hidden,
                        help="Print the version and exit.")
    return inspect.Parameter("version", inspect.Parameter.KEYWORD_ONLY, default=False,
                             annotation=Annotated[bool, info])


def _with_options(body: Callable[..., int | None], options: Sequence[inspect.Parameter],
                  *, own_first: bool = False) -> Callable[..., Any]:
    """``body`` with ``options`` added to its own parameters (before them, or after them
    with ``own_first``: the order of --help), which reach it only through ``ctx.params``."""
    own = inspect.signature(body, eval_str=True)
    first = [p for p in own.parameters.values() if p.name == "ctx"]
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.parameters.values()
            if p.name != "ctx"]

    @functools.wraps(body)
    def command(ctx: typer.Context, **values: Any) -> int | None:
        mine = {name: value for name, value in values.items() if name in own.parameters}
        return body(ctx, **mine) if first else body(**mine)

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)
    ordered = [*rest, *options] if own_first else [*options, *rest]
    command.__signature__ = own.replace(  # type: ignore[attr-defined]
        parameters=[*(first or [context]), *ordered])
    return command


def _command(name: str, *, shows: Sequence[str] | None = None, own_first: bool = False,
             run_options: bool = False, own_options: Sequence[grammar.Option] = (),
             help_of: Mapping[str, str] | None = None,
             group: typer.Typer | None = None,
             **settings: Any) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register a command (on ``app``, or on a sub-app ``group`` such as a future ``mcp``)
    with the grammar's global options, which SPEC §3 lets stand after any command name:
    listed in its --help when it uses them (``shows``: their dests, all by default;
    ``help_of``: its own words for some), accepted silently otherwise; plus run's options for
    ``run``, and the command's ``own_options`` of the grammar (scan's)."""
    def register(body: Callable[..., int]) -> Callable[..., int]:
        options = [_parameter(option, hidden=shows is not None and option.dest not in shows,
                              help_text=(help_of or {}).get(option.dest))
                   for option in grammar.GLOBAL_OPTIONS]
        if run_options:
            options += [_parameter(option) for option in grammar.RUN_OPTIONS]
        options += [_parameter(option) for option in own_options]
        options.append(_version_parameter(hidden=True))
        (group or app).command(name, **settings)(
            _with_options(body, options, own_first=own_first))
        return body

    return register


def _main_options(ctx: typer.Context) -> None:
    """Run any command with the secrets it needs, fetched at start-up from where they live.

    Example: keyrun -e staging -- python agent.py
    """
    ctx.obj = Selection(**_given_options(ctx.params, grammar.GLOBAL_OPTIONS))


app.callback()(_with_options(_main_options, [
    *(_parameter(option) for option in grammar.GLOBAL_OPTIONS), _version_parameter(hidden=False)]))


def _given_options(params: Mapping[str, Any], options: Sequence[grammar.Option]
                   ) -> dict[str, Any]:
    """Which of ``options`` a command was given (not their defaults), by dest."""
    given: dict[str, Any] = {}
    for option in options:
        value = params.get(option.dest)
        if value not in (None, False, []):
            given[option.dest] = tuple(value) if option.repeat else value
    return given


def _selection(ctx: typer.Context) -> Selection:
    """The global options, wherever on the command line they were given."""
    selection = ctx.obj
    assert isinstance(selection, Selection)
    return selection._replace(**_given_options(ctx.params, grammar.GLOBAL_OPTIONS))


@_command(
    grammar.RUN, run_options=True, cls=RunCommand,
    context_settings={"allow_extra_args": True, "allow_interspersed_args": False},
    options_metavar="[OPTIONS] [--] COMMAND [ARGS]...",
    epilog="Example: keyrun -e staging -- python agent.py   (same as: keyrun -e staging run "
    "-- python agent.py). Exit status: the command's own; 125 when keyrun fails before it "
    "starts, 126 not executable, 127 not found.",
)
def run(ctx: typer.Context) -> int:
    """Fetch the profile's keys, then replace keyrun with COMMAND (after --)."""
    selection = {**_given_options(ctx.find_root().params, grammar.GLOBAL_OPTIONS),
                 **_given_options(ctx.params, grammar.GLOBAL_OPTIONS)}
    return grammar.run_call(selection, _given_options(ctx.params, grammar.RUN_OPTIONS),
                            list(ctx.args)).start()


@_command("list", epilog="Example: keyrun list -e staging --json")
def list_keys(
    ctx: typer.Context,
    all_envs: Annotated[bool, typer.Option("--all-envs", help="Every environment side by side."
                        )] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> int:
    """Which keys the profile needs, where each comes from, which are missing.

    Values are never shown: a preview (sk-…a1b2) shows at most a quarter of a value, and
    nothing of one under 12 characters. Problems are rows; the exit status is 0 unless
    keyrun cannot run.
    """
    from keyrun.cli.commands import list_command

    return list_command(_selection(ctx), all_envs=all_envs, as_json=as_json)


@_command("doctor", epilog="Example: keyrun doctor -e production --strict")
def doctor(
    ctx: typer.Context,
    all_envs: Annotated[bool, typer.Option("--all-envs", help="Check every environment.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
    history: Annotated[bool, typer.Option("--history",
                       help="Also search git history for committed .env files.")] = False,
) -> int:
    """Everything that would stop `run`, plus hygiene checks. Exit 1 on problems."""
    from keyrun.cli.commands import doctor_command

    return doctor_command(_selection(ctx), all_envs=all_envs, as_json=as_json, strict=strict,
                          history=history)


@_command("set", own_first=True, context_settings={"allow_extra_args": True},
             epilog="Example: keyrun set OPENAI_API_KEY -e staging   (type the value at "
             "the hidden prompt, or pipe it in: printf '%s' \"$NEW_KEY\" | keyrun set "
             "OPENAI_API_KEY -e staging)")
def set_value(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The variable to write.",
                                       autocompletion=_complete_keys)],
    source: Annotated[str | None, typer.Option("--source", metavar="NAME",
                      help="Write to this source (default: the first writable one).")] = None,
) -> int:
    """Write a new value for KEY: how a key is rotated.

    The value comes from stdin, or from a hidden prompt on a terminal; never from the
    command line, where `ps` and shell history would keep it.
    """
    from keyrun.cli.commands import set_command

    if ctx.args:  # never echoed: it is most likely the value itself
        raise UsageError("keyrun set takes the value from stdin or a hidden prompt, never from "
                         "the command line (where ps and shell history keep it)",
                         f"type it at the prompt of: keyrun set {key}; or pipe it in: "
                         f"printf '%s' \"$VALUE\" | keyrun set {key}")
    return set_command(_selection(ctx), key, source)


@_command("init", shows=("project", "config"), own_first=True, help_of={
    "config": "Where to write keyrun.toml (a file, or a directory; default: here)."},
    epilog="Example: keyrun init   (in the project's directory; then keyrun doctor)")
def init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing keyrun.toml."
                     )] = False,
) -> int:
    """Write a keyrun.toml for this directory and keep .env files out of git."""
    from keyrun.scaffold import init_project

    selection = _selection(ctx)
    where = Path(selection.config) if selection.config else None
    done = init_project(Path.cwd(), force=force, project=selection.project, config=where)
    origin = f" from {done.keys_from}" if done.keys_from else ""
    count = f"{len(done.keys)} key{'s' if len(done.keys) != 1 else ''}"
    from keyrun.printable import printable

    print(printable(f"wrote {done.config} with {count}{origin}"), file=sys.stderr)
    if done.left_out:
        print(printable(f"left out {', '.join(done.left_out)}: not valid environment variable "
                        "names, or reserved ones (PATH, LD_PRELOAD, …) that a source may not "
                        "set"), file=sys.stderr)
    if done.gitignore_added:
        print(printable(f"added {', '.join(done.gitignore_added)} to {done.gitignore.name}"),
              file=sys.stderr)
    print("next: put values in .env (or `keyrun set KEY`), then `keyrun doctor`", file=sys.stderr)
    return 0


@_command("log", shows=(), epilog="Example: keyrun log -n 20   |   keyrun log --json | jq '.[0]'")
def log(
    limit: Annotated[int, typer.Option("-n", "--limit", metavar="N",
                                       help="Show this many entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> int:
    """The access log, newest first: who resolved which keys, where, when. Never values."""
    import os

    from keyrun.accesslog import read_entries

    path, entries = read_entries(os.environ)
    entries = entries[: max(0, limit)]
    if as_json:
        render.print_json(entries)
        return 0
    if path is None:
        print("the access log is off (KEYRUN_ACCESS_LOG=off)", file=sys.stderr)
        return 0
    rows = [[e.get("time", ""), e.get("action", ""), f"{e.get('project')}/{e.get('env')}",
             e.get("command") or "", _keys_cell(e)] for e in entries]
    render.table(["TIME", "ACTION", "PROFILE", "COMMAND", "KEYS"], rows, title=f"{path}",
                 folding=("KEYS",))
    return 0


@_command(grammar.SCAN, own_options=grammar.SCAN_OPTIONS,
          epilog="Example: keyrun scan --staged   (in a pre-commit hook; keyrun scan "
          "--history --format sarif > keyrun.sarif for code scanning)")
def scan(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="[PATH]...", help="Files or directories (default: the git work tree).")] = None,
) -> int:
    """Find leaked credentials: known key formats of AI and cloud providers, and the exact
    values of this profile's keys, also inside archives. A line carrying `keyrun:allow` is
    skipped, and so is a finding a baseline accepts. Exit 1 when something is found;
    previews are masked, the full secret is never printed."""
    selection = {**_given_options(ctx.find_root().params, grammar.GLOBAL_OPTIONS),
                 **_given_options(ctx.params, grammar.GLOBAL_OPTIONS)}
    return grammar.scan_call(selection, _given_options(ctx.params, grammar.SCAN_OPTIONS),
                             list(paths or [])).start()


@_command("trust", shows=("env", "project", "config", "quiet"), own_first=True,
          epilog="Example: keyrun trust vault.example.com   |   keyrun trust --list   |   "
          "keyrun trust --remove vault.example.com")
def trust(
    ctx: typer.Context,
    hosts: Annotated[list[str] | None, typer.Argument(
        metavar="[HOST]...", help="Hosts to trust (default: every host this config names "
        "that needs trust).")] = None,
    listing: Annotated[bool, typer.Option("--list", help="Show the trusted hosts.")] = False,
    remove: Annotated[list[str] | None, typer.Option(
        "--remove", metavar="HOST", help="Stop trusting HOST (repeatable).")] = None,
) -> int:
    """Let profiles send credentials (the Vault or Doppler token, a cloud access token) to a
    host. Loopback, the services' own endpoints and the hosts named by VAULT_ADDR or
    DOPPLER_API_HOST need no trust; plain http is refused off loopback even when trusted."""
    from keyrun.cli.commands import trust_command

    return trust_command(_selection(ctx), hosts or [], listing=listing, remove=remove or [])


@_command("sources", shows=(), epilog="Example: keyrun sources --json")
def sources(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> int:
    """The source types installed here (built-in and third-party), the extra each needs, and
    whether it is usable."""
    from keyrun.cli.commands import sources_command

    return sources_command(as_json=as_json)


mcp_app = typer.Typer(
    name="mcp", no_args_is_help=True, rich_markup_mode=None,
    help="MCP servers without keys in their clients' configuration files (Claude Desktop, "
    "Claude Code, Cursor, VS Code, Windsurf).",
    epilog="Example: keyrun mcp scan, then keyrun mcp protect --dry-run, then keyrun mcp "
    "protect",
    context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(mcp_app)


@_command("scan", group=mcp_app, shows=("quiet",),
          epilog="Example: keyrun mcp scan   |   keyrun mcp scan --format json ./.vscode/mcp.json")
def mcp_scan(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="[PATH]...", help="Other configuration files, or project directories, to "
        "read besides the usual places.")] = None,
    output: Annotated[str, typer.Option("--format", metavar="text|json",
                      help="Output format.")] = "text",
) -> int:
    """Find MCP server entries whose env, args or headers hold a literal credential (a known
    key format, or a credential-like name with a value that is no placeholder or reference).
    Exit 1 when one is found; previews are masked. Unreadable files are named and skipped."""
    from keyrun.cli.mcp import mcp_scan_command

    if output not in ("text", "json"):
        raise UsageError(f"--format {output}: not a format", "formats: text, json")
    return mcp_scan_command(_selection(ctx), paths or [], output)


@_command("protect", group=mcp_app, shows=("config", "project", "quiet"), help_of={
    "config": "The keyrun.toml whose source --to SOURCE names.",
    "project": "The project of a new profile (default: mcp; with -c, that file's)."},
    epilog="Example: keyrun mcp protect --dry-run, then keyrun mcp protect   (restart the "
    "clients afterwards)")
def mcp_protect(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="[PATH]...", help="Other configuration files, or project directories.")] = None,
    to: Annotated[str, typer.Option("--to", metavar="keychain|dotenv:PATH|SOURCE",
                  help="Where the values go: the OS keychain, a .env file outside any git "
                  "work tree, or a writable source of the keyrun.toml given with -c.")
                  ] = "keychain",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change, values masked; "
                       "change nothing.")] = False,
) -> int:
    """Move the credentials `keyrun mcp scan` finds into a store: each server gets an
    environment in a keyrun profile (~/.config/keyrun/mcp/), and its entry starts through
    keyrun. Everything else in the file is kept; no copy of a value is left behind. Remote
    servers are reported with what to do instead. Exit 1 when a finding is left in place."""
    from keyrun.cli.mcp import mcp_protect_command

    return mcp_protect_command(_selection(ctx), paths or [], to, dry_run)


def _keys_cell(entry: dict[str, Any]) -> str:
    keys = [f"{k.get('name')}({k.get('source')})" for k in entry.get("keys", [])]
    missing = [f"{name}(missing)" for name in entry.get("missing", [])]
    return ", ".join(keys + missing)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (poll says POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError):
        return False


def _missing_value(exc: Exception) -> UsageError | None:
    """click's "Option '-e' requires an argument." for a global option, in the fast path's
    words (click's class, vendored by Typer or not, is known here by its name)."""
    option = grammar.find(str(getattr(exc, "option_name", "")))
    if type(exc).__name__ == "BadOptionUsage" and option is not None and option.metavar:
        return grammar.needs_value(option)
    return None


@functools.cache
def _click_command() -> Any:
    """The app as click sees it: built once (tests parse thousands of command lines)."""
    import typer.main

    command = typer.main.get_command(app)
    plain_arguments(command)
    return command


def run_app(args: list[str]) -> int:
    """Run the Typer app without letting click exit or print tracebacks itself."""
    try:
        result = _click_command().main(args=args, prog_name="keyrun", standalone_mode=False)
    except SystemExit as exc:
        # Typer turns a write to a closed pipe (`keyrun list | head -1`) into exit 1, which
        # for doctor means "problems found": end as GNU tools do, by SIGPIPE (141).
        if exc.code == 1 and _stdout_reader_gone():
            raise Terminated(signal.SIGPIPE) from None  # the boundary dies of it
        raise
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("\naborted", file=sys.stderr)
        return 130
    except Exception as exc:
        missing = _missing_value(exc)
        if missing is not None:
            raise missing from None
        # Typer's usage errors (vendored click): they know how to show themselves.
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return result if isinstance(result, int) else 0
