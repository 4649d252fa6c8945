"""Progress on stderr while a remote source is waited for, only on a terminal: list,
doctor, scan and set against a Doppler fake that answers after 1 s."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doppler_server import CONFIG, TOKEN, FakeDoppler
from tests.helpers import CANARY, assert_no_leak, clean_env, keyrun_on_terminal, write

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@pytest.fixture(scope="module")
def slow() -> Iterator[FakeDoppler]:
    server = FakeDoppler()
    server.grant(TOKEN)
    server.put("bot", "dev", "OPENAI_API_KEY", CANARY)
    server.put("bot", "dev", "ANTHROPIC_API_KEY", CANARY + "-anthropic")
    server.hang = 1.0
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(("args", "waiting"), [
    (["--", "true"], "fetching bot/dev from doppler…"),
    (["list"], "fetching bot/dev from doppler…"),
    (["doctor"], "checking doppler; fetching bot/dev from doppler…"),  # in either order
    (["scan", "notes.txt"], "fetching bot/dev from doppler…"),
    (["set", "OPENAI_API_KEY"], "writing OPENAI_API_KEY to doppler…"),
], ids=lambda a: a[0].strip("-") or "run" if isinstance(a, list) else "")
def test_progress_on_a_terminal_only(slow: FakeDoppler, tmp_path: Path, args: list[str],
                                     waiting: str) -> None:
    root = tmp_path / "bot"
    write(root / "keyrun.toml", CONFIG.format(url=slow.url, timeout="10s"))
    write(root / "notes.txt", "nothing secret here\n")
    env = clean_env(tmp_path, DOPPLER_TOKEN=TOKEN)
    value = None if args[0] != "set" else "sk-new-" + "0f1e2d3c4b5a6978\n"
    code, out, err = keyrun_on_terminal(args, cwd=root, env=env, terminal="stderr",
                                        input=value or "")
    assert code in (0, 1), err
    frames = [part for part in err.split("\r") if part and part[0] in SPINNER]
    assert frames, err
    tasks = frames[0][2:].removesuffix("…\x1b[K").split("; ")
    assert sorted(tasks) == sorted(waiting.removesuffix("…").split("; ")), frames[0]
    assert err.rfind("\r\x1b[K") > err.rfind("…\x1b[K")  # cleared when the wait is over
    # stderr a pipe: no progress at all
    piped = subprocess.run([sys.executable, "-m", "keyrun", *args], cwd=root, env=env,
                           input=value, capture_output=True, text=True, timeout=60, check=False)
    assert not any(frame in piped.stderr for frame in SPINNER)
    assert "\x1b[K" not in piped.stderr
    assert_no_leak(CANARY, out, err, piped.stdout, piped.stderr)


def test_quiet_shows_no_progress(slow: FakeDoppler, tmp_path: Path) -> None:
    root = tmp_path / "bot"
    write(root / "keyrun.toml", CONFIG.format(url=slow.url, timeout="10s"))
    code, out, err = keyrun_on_terminal(["-q", "list"], cwd=root, terminal="stderr",
                                        env=clean_env(tmp_path, DOPPLER_TOKEN=TOKEN))
    assert (code, err) == (0, "")
    assert "OPENAI_API_KEY" in out
