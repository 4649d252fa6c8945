"""Start-up cost of `keyrun -e dev -- /bin/true` against python-dotenv's own CLI.

    python benchmarks/startup.py [--runs 40] [--before DIR]

Ten keys in a .env file, read three ways, each command run --runs times in interleaved
rounds (so machine noise hits all of them alike); prints each median and the ratios.
python-dotenv's `dotenv run` needs its CLI extra (click), which the test extra installs.
Byte code is compiled first, as `pip install` does for an installed package.
--before DIR also times the keyrun package found in DIR (e.g. `git archive main keyrun | tar
-x -C DIR`) through the same console script, so a change is measured against its base in
the same rounds.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def setup(directory: Path) -> dict[str, str]:
    keys = [f"SERVICE_{i}_API_KEY" for i in range(10)]
    (directory / ".env").write_text(
        "".join(f"{key}=sk-bench-{i:02d}-{'x' * 40}\n" for i, key in enumerate(keys)))
    (directory / ".env").chmod(0o600)
    (directory / "keyrun.toml").write_text(
        'project = "bench"\n[keys]\n' + "".join(f"{key} = {{}}\n" for key in keys)
        + '[sources.local]\ntype = "dotenv"\n[env.dev]\nsources = ["local"]\n')
    env = dict(os.environ, KEYRUN_ACCESS_LOG=str(directory / "access.log"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_once(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="a directory holding another keyrun package to time as well")
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "keyrun", quiet=1)
    if args.before:
        compileall.compile_dir(args.before / "keyrun", quiet=1)
    dotenv = shutil.which("dotenv", path=str(BIN)) or "dotenv"
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        env = setup(directory)
        keyrun = [str(BIN / "keyrun"), "-e", "dev", "--", "/bin/true"]
        commands = {
            "keyrun -e dev -- /bin/true": (keyrun, env),
            "dotenv -f .env run -- /bin/true": ([dotenv, "-f", ".env", "run", "--", "/bin/true"],
                                                env),
            "python -c pass": ([sys.executable, "-c", "pass"], env),
        }
        if args.before:
            before = dict(env, PYTHONPATH=str(args.before.resolve()))
            commands["keyrun (before)"] = (keyrun, before)
        for command, command_env in commands.values():  # warm the page cache
            time_once(command, directory, command_env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (command, command_env) in commands.items():
                samples[name].append(time_once(command, directory, command_env))
    medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print(f"{args.runs} runs each, interleaved; median wall time")
    for name, median in medians.items():
        print(f"  {name:<34} {median:7.1f} ms")
    keyrun_ms, dotenv_ms, python_ms = (medians[name] for name in list(commands)[:3])
    print(f"  keyrun / dotenv run              {keyrun_ms / dotenv_ms:7.2f}x")
    print(f"  keyrun / python -c pass          {keyrun_ms / python_ms:7.2f}x")
    if args.before:
        before_ms = medians["keyrun (before)"]
        print(f"  keyrun (before) / dotenv run     {before_ms / dotenv_ms:7.2f}x")
        print(f"  keyrun / keyrun (before)         {keyrun_ms / before_ms:7.2f}x")


if __name__ == "__main__":
    main()
