"""`keyrun run --mask` as a real process, on pipes and on a pseudo-terminal, against the ways
a command writes a value in time (issue 13, SPEC §5 "Masking"): however the writes are split
and spaced, at most the first 4 characters of a value show before its label; prompts still
show; bytes that hold no value pass unchanged; keyrun ends with the command."""

from __future__ import annotations

import base64
import os
import pty
import random
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.helpers import clean_env, dotenv_project, read_to_end

PY = sys.executable
VALUE = "sk-Str3amedT0kenValue0123456Z"  # 29 characters, as in the issue
LABEL = b"<OPENAI_API_KEY>"

# How a command writes the value: the issue's table.
WRITER = """
import os, sys, time
v = os.environ["OPENAI_API_KEY"].encode()
how = sys.argv[1]
if how == "halves":
    os.write(1, v[:14]); time.sleep(0.2); os.write(1, v[14:] + b"\\n")
elif how == "pieces":
    for i in range(0, len(v), 4):
        os.write(1, v[i:i + 4]); time.sleep(0.06)
    os.write(1, b"\\n")
elif how == "bytes":
    for i in range(len(v)):
        os.write(1, v[i:i + 1]); time.sleep(0.1)
    os.write(1, b"\\n")
"""
WAYS = ["halves", "pieces", "bytes"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return dotenv_project(tmp_path / "proj", {"OPENAI_API_KEY": VALUE})


def masked_run(project: Path, tmp_path: Path, command: Sequence[str],
               **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    options = {"capture_output": True, **kwargs}
    return subprocess.run([PY, "-m", "keyrun", "-q", "run", "--mask", "--", *command],
                          cwd=project, env=clean_env(tmp_path), timeout=60, check=False,
                          **options)  # type: ignore[call-overload]


def on_terminal(project: Path, tmp_path: Path, command: Sequence[str],
                typed: bytes = b"") -> bytes:
    """keyrun with a pseudo-terminal as stdin, stdout and stderr; all it wrote there."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(project)
        os.execve(PY, [PY, "-m", "keyrun", "-q", "run", "--mask", "--", *command],
                  clean_env(tmp_path))
    if typed:
        os.write(fd, typed)
    output = read_to_end(fd)
    os.waitpid(pid, 0)
    os.close(fd)
    return output


def allowed(tail: bytes) -> set[bytes]:
    """The value masked whole, or after at most its first 4 characters."""
    return {VALUE.encode()[:shown] + LABEL + tail for shown in range(5)}


@pytest.mark.parametrize("how", WAYS)
def test_value_written_slowly_on_pipes(project: Path, tmp_path: Path, how: str) -> None:
    done = masked_run(project, tmp_path, [PY, "-c", WRITER, how])
    assert done.returncode == 0
    assert done.stdout in allowed(b"\n")
    assert done.stderr == b""


@pytest.mark.parametrize("how", WAYS)
def test_value_written_slowly_on_a_terminal(project: Path, tmp_path: Path, how: str) -> None:
    output = on_terminal(project, tmp_path, [PY, "-c", WRITER, how])
    assert output in allowed(b"\r\n")


PROMPT = """
import os, sys, time
os.write(1, sys.argv[1].encode())
with open(sys.argv[2], "w") as note:
    note.write(repr(time.monotonic()))
sys.stdin.readline()
"""


def prompt_delay(project: Path, tmp_path: Path, prompt: str, terminal: bool) -> float:
    """Seconds from the command's write of ``prompt`` to its arrival at keyrun's reader."""
    note = tmp_path / "written"
    note.unlink(missing_ok=True)
    argv = [PY, "-m", "keyrun", "-q", "run", "--mask", "--", PY, "-c", PROMPT, prompt, str(note)]
    env = clean_env(tmp_path)
    if terminal:
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(project)
            os.execve(PY, argv, env)
        process = None
    else:
        process = subprocess.Popen(argv, cwd=project, env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE)
        assert process.stdout is not None
        fd = process.stdout.fileno()
    try:
        shown = b""
        while not shown.endswith(prompt.encode()):
            assert select.select([fd], [], [], 20)[0], f"the prompt never showed: {shown!r}"
            shown += os.read(fd, 1024)
        arrived = time.monotonic()
        assert shown == prompt.encode()
        while not note.exists() or not note.read_text():
            time.sleep(0.005)
        return arrived - float(note.read_text())
    finally:
        if process is None:
            os.write(fd, b"\r")
            os.waitpid(pid, 0)
            os.close(fd)
        else:
            assert process.stdin is not None
            process.communicate(b"\n", timeout=20)


@pytest.mark.parametrize("terminal", [False, True], ids=["pipes", "terminal"])
@pytest.mark.parametrize("prompt", ["Password: ", "token [sk-"],
                         ids=["nothing-held", "could-begin-the-value"])
def test_a_prompt_that_does_not_begin_a_value_shows_within_100_ms(
        project: Path, tmp_path: Path, prompt: str, terminal: bool) -> None:
    """"token [sk-" ends in 3 characters that begin the value: keyrun holds them until the
    command has been quiet for 30 ms. The bound is the relay's, not the scheduler's: on a
    loaded machine (2 cores shared by several test suites) one run may be descheduled for
    longer, so the best of five runs must be under 100 ms — a relay that waited longer by
    design would fail every time."""
    delays = []
    for _ in range(5):
        delays.append(prompt_delay(project, tmp_path, prompt, terminal))
        if min(delays) < 0.1:
            break
    assert min(delays) < 0.1, delays


def test_random_megabytes_pass_unchanged_on_pipes(project: Path, tmp_path: Path) -> None:
    data = random.Random(13).randbytes(6 << 20)
    source = tmp_path / "random.bin"
    source.write_bytes(data)
    done = masked_run(project, tmp_path, ["cat", str(source)])
    assert done.returncode == 0
    assert done.stdout == data


def test_random_megabytes_pass_unchanged_on_a_terminal(project: Path, tmp_path: Path) -> None:
    """The command's pseudo-terminal turns "\\n" into "\\r\\n" (keyrun's own is raw), and
    nothing else changes."""
    data = random.Random(17).randbytes(1 << 20)
    source = tmp_path / "random.bin"
    source.write_bytes(data)
    assert on_terminal(project, tmp_path, ["cat", str(source)]) == data.replace(b"\n", b"\r\n")


def test_keyrun_ends_with_the_command_when_stdout_is_a_file(
        project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    started = time.monotonic()
    with out.open("wb") as sink:
        done = masked_run(project, tmp_path, ["sh", "-c", 'sleep 8 & echo "started $OPENAI_API_KEY"'],
                          stdout=sink, stderr=subprocess.PIPE, capture_output=False)
    took = time.monotonic() - started
    assert done.returncode == 0
    assert out.read_bytes() == b"started <OPENAI_API_KEY>\n"
    assert took < 4, took  # keyrun's start-up and the 50 ms of quiet, not the 8 s sleep


def test_keyrun_ends_with_the_command_on_pipes(project: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    done = masked_run(project, tmp_path, ["sh", "-c", "sleep 8 & echo started; exit 3"])
    assert time.monotonic() - started < 4
    assert done.returncode == 3
    assert done.stdout == b"started\n"


ENCODER = """
import base64, html, os, sys
v = os.environ["OPENAI_API_KEY"]
raw = v.encode()
pairs = [raw.hex()[i:i + 2] for i in range(0, 2 * len(raw), 2)]
forms = {
    "utf-16-le": v.encode("utf-16-le"),
    "utf-16-be": v.encode("utf-16-be"),
    "utf-16 with BOM": v.encode("utf-16"),
    "base32": base64.b32encode(raw),
    "json every char": "".join(f"\\\\u{ord(c):04x}" for c in v).encode(),
    "html decimal": "".join(f"&#{ord(c)};" for c in v).encode(),
    "html hex": "".join(f"&#x{ord(c):X};" for c in v).encode(),
    "hex pairs": " ".join(pairs).encode(),
    "xxd groups": " ".join("".join(pairs[i:i + 2]) for i in range(0, len(pairs), 2)).encode(),
    "colour inside": raw[:9] + b"\\x1b[1;31m" + raw[9:] + b"\\x1b[0m",
    "mime base64": base64.encodebytes(b"x" * 50 + raw).replace(b"\\n", b"\\r\\n").rstrip(),
    "pem base64": b"\\n".join(base64.b64encode(b"y" * 40 + raw)[i:i + 64] for i in (0, 64)),
}
for name, form in forms.items():
    os.write(1, name.encode() + b": " + form + b"\\n")
"""


def test_each_encoding_issue_13_names_is_masked(project: Path, tmp_path: Path) -> None:
    done = masked_run(project, tmp_path, [PY, "-c", ENCODER])
    assert done.returncode == 0
    assert done.stdout.split(b"\n") == [
        b"utf-16-le: " + LABEL + b"\x00",  # the NUL after the last character is not its own
        b"utf-16-be: \x00" + LABEL,
        b"utf-16 with BOM: \xff\xfe" + LABEL + b"\x00",
        b"base32: " + LABEL + b"=",  # padding tells nothing
        b"json every char: " + LABEL,
        b"html decimal: " + LABEL,
        b"html hex: " + LABEL,
        b"hex pairs: " + LABEL,
        b"xxd groups: " + LABEL,
        b"colour inside: " + LABEL + b"\x1b[0m",
        # what shows: the characters of the bytes before the value, one of them shared
        b"mime base64: " + base64.b64encode(b"x" * 50 + VALUE.encode())[:67] + LABEL,
        b"pem base64: " + base64.b64encode(b"y" * 40 + VALUE.encode())[:54] + LABEL,
        b"",
    ]


SPLITTER = """
import os, sys, time
v = os.environ["OPENAI_API_KEY"].encode()
first, second = (1, 2) if sys.argv[1] == "out-first" else (2, 1)
os.write(first, v[:14]); time.sleep(float(sys.argv[2])); os.write(second, v[14:] + b"\\n")
os.write(first, b"|\\n")
"""


@pytest.mark.parametrize("pause", [0.0, 0.2])
@pytest.mark.parametrize("order", ["out-first", "err-first"])
def test_a_value_split_between_stdout_and_stderr_is_masked_on_each(
        project: Path, tmp_path: Path, order: str, pause: float) -> None:
    done = masked_run(project, tmp_path, [PY, "-c", SPLITTER, order, str(pause)])
    assert done.returncode == 0
    first, second = (done.stdout, done.stderr) if order == "out-first" else (
        done.stderr, done.stdout)
    assert first in {VALUE.encode()[:shown] + LABEL + b"|\n" for shown in range(5)}
    assert second == LABEL + b"\n"


SHORT = "x7Qp2z"  # 6 characters: the shortest value masked
SHORT_SPLITTER = """
import os, sys, time
v = os.environ["SHORT_PIN"].encode()
first, second = (1, 2) if sys.argv[1] == "out-first" else (2, 1)
os.write(first, v[:3]); time.sleep(0.2); os.write(second, v[3:] + b"\\n")
os.write(first, b"|\\n")
"""


@pytest.mark.parametrize("order", ["out-first", "err-first"])
def test_a_short_value_split_between_stdout_and_stderr_is_masked_on_each(
        tmp_path: Path, order: str) -> None:
    """Its first half (3 characters) is all a quiet stream lets out, so nothing of it stays
    held: the other output's half must still be recognised as its end, not shown."""
    project = dotenv_project(tmp_path / "short", {"SHORT_PIN": SHORT})
    done = masked_run(project, tmp_path, [PY, "-c", SHORT_SPLITTER, order])
    assert done.returncode == 0
    first, second = (done.stdout, done.stderr) if order == "out-first" else (
        done.stderr, done.stdout)
    label = b"<SHORT_PIN>"
    assert first in {SHORT.encode()[:shown] + label + b"|\n" for shown in range(4)}
    assert second == label + b"\n"
