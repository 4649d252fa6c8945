"""How much of a value reaches keyrun's output when the command writes it slowly (issue 13).

    python benchmarks/mask_leaks.py [--root CHECKOUT] [--rounds 3]

A 29-character value is written by the command in the ways streamed output arrives (halves
200 ms apart, 4-byte pieces every 60 ms, one byte every 100 ms, split between stdout and
stderr), through ``keyrun.relay.relay`` on pipes and on a pseudo-terminal. For each way the
table gives the most characters of the value that appeared in clear (the longest run of
the value found in the output, worst round), and whether the rest was masked. SPEC §5
allows at most the first 4. ``--root`` measures another checkout (an older keyrun) with
the same probes.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import read_to_end  # noqa: E402

VALUE = "sk-Str3amedT0kenValue0123456Z"  # 29 characters, as in the issue
LAUNCHER = """
import json, os, sys
from keyrun.mask import MaskSet
from keyrun.relay import relay
relay(sys.argv[1:], dict(os.environ), MaskSet(json.loads(os.environ.pop("LEAK_VALUES"))))
"""
WRITER = """
import os, sys, time
v = os.environ["OPENAI_API_KEY"].encode()
how = sys.argv[1]
def out(fd, data):
    os.write(fd, data)
if how == "halves":
    out(1, v[:14]); time.sleep(0.2); out(1, v[14:] + b"\\n")
elif how == "pieces":
    for i in range(0, len(v), 4):
        out(1, v[i:i + 4]); time.sleep(0.06)
    out(1, b"\\n")
elif how == "bytes":
    for i in range(len(v)):
        out(1, v[i:i + 1]); time.sleep(0.1)
    out(1, b"\\n")
elif how == "stdout+stderr":
    out(1, v[:14]); time.sleep(0.05); out(2, v[14:] + b"\\n"); time.sleep(0.05); out(1, b"\\n")
"""
WAYS = ("halves", "pieces", "bytes", "stdout+stderr")


def leaked(output: bytes) -> int:
    text = output.decode("utf-8", "replace")
    match = difflib.SequenceMatcher(None, text, VALUE, autojunk=False).find_longest_match()
    return match.size


def environment(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root), OPENAI_API_KEY=VALUE,
               LEAK_VALUES=json.dumps({"OPENAI_API_KEY": VALUE}))
    env.pop("KEYRUN_DEBUG", None)
    return env


def on_pipes(root: Path, how: str) -> tuple[bytes, bytes]:
    """The run with pipes, from "/": ``python -c`` would import keyrun from the working
    directory before ``root``."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-c", WRITER, how],
                          capture_output=True, env=environment(root), timeout=30, check=False,
                          cwd="/")
    return done.stdout, done.stderr


def on_terminal(root: Path, how: str) -> tuple[bytes, bytes]:
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir("/")  # python -c imports from the working directory before PYTHONPATH
        os.execve(sys.executable, [sys.executable, "-c", LAUNCHER, sys.executable, "-c",
                                   WRITER, how], environment(root))
    output = read_to_end(fd)
    os.waitpid(pid, 0)
    os.close(fd)
    return output, b""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"keyrun from {args.root}; value of {len(VALUE)} characters\n")
    print("| how the command writes it | pipes: shown in clear | terminal: shown in clear |")
    print("|---|---|---|")
    for how in WAYS:
        cells = []
        for run in (on_pipes, on_terminal):
            worst, masked = 0, True
            for _ in range(args.rounds):
                out, err = run(args.root, how)
                worst = max(worst, leaked(out), leaked(err))
                masked = masked and b"<OPENAI_API_KEY>" in out + err
            cells.append(f"{worst} of {len(VALUE)}" + ("" if masked else " (never masked)"))
        print(f"| {how} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
