"""The Typer application: every command except the fast ``run`` path (see ``keyrun.cli``)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from keyrun import __version__
from keyrun.cli import render
from keyrun.errors import UsageError
from keyrun.run import RunOptions, Selection

app = typer.Typer(
    name="keyrun",
    help="Run any command with the secrets it needs, fetched at start-up from where they live.\n\n"
    "Example: keyrun -e staging -- python agent.py",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # they print locals, and locals hold secrets
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
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


# The global options, accepted after the command name too (`keyrun list -e staging`): the
# command line is normalized before parsing, and declaring them on each command puts them in
# its --help and lets the shell complete them there.
EnvOption = Annotated[str | None, typer.Option(
    "-e", "--env", metavar="ENV", help="Environment (default: $KEYRUN_ENV, else default_env).",
    autocompletion=_complete_envs)]
ProjectOption = Annotated[str | None, typer.Option(
    "-p", "--project", metavar="NAME", help="Override the project name used in {project}.")]
ConfigOption = Annotated[str | None, typer.Option(
    "-c", "--config", metavar="PATH",
    help="keyrun.toml to use (default: $KEYRUN_CONFIG, else found upward from here).")]
QuietOption = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr.")]
VerboseOption = Annotated[bool, typer.Option("-v", "--verbose",
                                             help="Say which source each key came from.")]


def _version(value: bool) -> None:
    if value:
        print(f"keyrun {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    env: EnvOption = None,
    project: ProjectOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                       help="Print the version and exit.")] = False,
) -> None:
    """Run any command with the secrets it needs, fetched at start-up from where they live.

    Example: keyrun -e staging -- python agent.py
    """
    ctx.obj = Selection(env=env, project=project, config=config, quiet=quiet, verbose=verbose)


def _selection(ctx: typer.Context) -> Selection:
    """The global options, wherever on the command line they were given."""
    selection = ctx.obj
    assert isinstance(selection, Selection)
    given = {name: value for name in Selection._fields
             if (value := ctx.params.get(name)) not in (None, False)}
    return selection._replace(**given)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                      "allow_interspersed_args": False},
    options_metavar="[OPTIONS] [--] COMMAND [ARGS]...",
    epilog="Example: keyrun -e staging -- python agent.py   (same as: keyrun -e staging run "
    "-- python agent.py). Exit status: the command's own; 125 when keyrun fails before it "
    "starts, 126 not executable, 127 not found.",
)
def run(
    ctx: typer.Context,
    env: EnvOption = None,
    project: ProjectOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    only: Annotated[list[str] | None, typer.Option("--only", metavar="KEY",
                    help="Fetch and pass only this key (repeatable).",
                    autocompletion=_complete_keys)] = None,
    allow_missing: Annotated[bool, typer.Option("--allow-missing",
                             help="Run even if required keys are missing (warns).")] = False,
    preserve_env: Annotated[bool, typer.Option("--preserve-env",
                            help="A variable already set in this shell wins.")] = False,
    clean_env: Annotated[bool, typer.Option("--clean-env", help="Pass only the keys plus PATH, "
                         "HOME, USER, LANG, TERM, TZ and the like.")] = False,
    allow_argv_secrets: Annotated[bool, typer.Option("--allow-argv-secrets",
                                  help="Allow a secret value inside the command's arguments."
                                  )] = False,
    mask: Annotated[bool, typer.Option("--mask", help="Replace every secret value (and its "
                    "common encodings) in the command's output with <KEY_NAME>.")] = False,
) -> int:
    """Fetch the profile's keys, then replace keyrun with COMMAND (after --)."""
    from keyrun.run import run_command

    command = list(ctx.args)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no command given", "run a command as: keyrun [-e ENV] -- COMMAND")
    if preserve_env and clean_env:
        raise UsageError("--preserve-env and --clean-env cannot be used together")
    options = RunOptions(tuple(only or ()), allow_missing, preserve_env, clean_env,
                         allow_argv_secrets, mask)
    return run_command(command, _selection(ctx), options)


@app.command("list", epilog="Example: keyrun list -e staging --json")
def list_keys(
    ctx: typer.Context,
    env: EnvOption = None,
    project: ProjectOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    all_envs: Annotated[bool, typer.Option("--all-envs", help="Every environment side by side."
                        )] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> int:
    """Which keys the profile needs, where each comes from, which are missing.

    Values are never shown: a preview keeps the first 3 and last 4 characters of values of
    12 characters or more. Problems are rows; the exit status is 0 unless keyrun cannot run.
    """
    from keyrun.cli.commands import list_command

    return list_command(_selection(ctx), all_envs=all_envs, as_json=as_json)


@app.command(epilog="Example: keyrun doctor -e production --strict")
def doctor(
    ctx: typer.Context,
    env: EnvOption = None,
    project: ProjectOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
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


@app.command("set", context_settings={"allow_extra_args": True},
             epilog="Example: keyrun set OPENAI_API_KEY -e staging   (type the value at "
             "the hidden prompt, or pipe it in: printf '%s' \"$NEW_KEY\" | keyrun set "
             "OPENAI_API_KEY -e staging)")
def set_value(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The variable to write.",
                                       autocompletion=_complete_keys)],
    source: Annotated[str | None, typer.Option("--source", metavar="NAME",
                      help="Write to this source (default: the first writable one).")] = None,
    env: EnvOption = None,
    project: ProjectOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
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


@app.command(epilog="Example: keyrun init   (in the project's directory; then keyrun doctor)")
def init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing keyrun.toml."
                     )] = False,
    project: ProjectOption = None,
    config: Annotated[str | None, typer.Option(
        "-c", "--config", metavar="PATH",
        help="Where to write keyrun.toml (a file, or a directory; default: here).")] = None,
) -> int:
    """Write a keyrun.toml for this directory and keep .env files out of git."""
    from keyrun.scaffold import init_project

    selection = _selection(ctx)
    where = Path(selection.config) if selection.config else None
    done = init_project(Path.cwd(), force=force, project=selection.project, config=where)
    origin = f" from {done.keys_from}" if done.keys_from else ""
    count = f"{len(done.keys)} key{'s' if len(done.keys) != 1 else ''}"
    print(f"wrote {done.config} with {count}{origin}", file=sys.stderr)
    if done.left_out:
        print(f"left out {', '.join(done.left_out)}: not valid environment variable names, "
              "or reserved ones (PATH, LD_PRELOAD, …) that a source may not set",
              file=sys.stderr)
    if done.gitignore_added:
        print(f"added {', '.join(done.gitignore_added)} to {done.gitignore.name}", file=sys.stderr)
    print("next: put values in .env (or `keyrun set KEY`), then `keyrun doctor`", file=sys.stderr)
    return 0


@app.command(epilog="Example: keyrun log -n 20   |   keyrun log --json | jq '.[0]'")
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
    render.table(["TIME", "ACTION", "PROFILE", "COMMAND", "KEYS"], rows, title=f"{path}")
    return 0


@app.command(epilog="Example: keyrun scan --staged   (in a pre-commit hook; keyrun scan "
             "--history --format sarif > keyrun.sarif for code scanning)")
def scan(
    ctx: typer.Context,
    env: EnvOption = None,
    project: ProjectOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="[PATH]...", help="Files or directories (default: the git work tree).")] = None,
    staged: Annotated[bool, typer.Option("--staged", help="Scan what the next commit adds: "
                      "the index, not the working copy.")] = False,
    history: Annotated[bool, typer.Option("--history", help="Scan every commit (lines each "
                       "one added), reporting the commit id.")] = False,
    output: Annotated[str, typer.Option("--format", metavar="text|json|sarif",
                      help="Output format.")] = "text",
) -> int:
    """Find leaked credentials: known key formats of AI and cloud providers, and the exact
    values of this profile's keys. A line carrying `keyrun:allow` is skipped. Exit 1 when
    something is found; previews are masked, the full secret is never printed."""
    from keyrun.cli.commands import scan_command

    if output not in ("text", "json", "sarif"):
        raise UsageError(f"--format {output}: not a format", "formats: text, json, sarif")
    return scan_command(_selection(ctx), paths or [], staged=staged, history=history,
                        output=output)


@app.command(epilog="Example: keyrun sources --json")
def sources(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> int:
    """The source types installed here (built-in and third-party), the extra each needs, and
    whether it is usable."""
    from keyrun.cli.commands import sources_command

    return sources_command(as_json=as_json)


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


def run_app(args: list[str]) -> int:
    """Run the Typer app without letting click exit or print tracebacks itself."""
    try:
        result = app(args=args, prog_name="keyrun", standalone_mode=False)
    except SystemExit as exc:
        # Typer turns a write to a closed pipe (`keyrun list | head -1`) into exit 1, which
        # for doctor means "problems found": end as GNU tools do, by SIGPIPE (141).
        if exc.code == 1 and _stdout_reader_gone():
            from keyrun.cli import _die_of

            return _die_of(signal.SIGPIPE)
        raise
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("\naborted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Typer's usage errors (vendored click): they know how to show themselves.
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return result if isinstance(result, int) else 0
