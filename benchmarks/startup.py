"""Start-up cost of `keyrun -e dev -- /bin/true` against python-dotenv's own CLI.

    python benchmarks/startup.py [--runs 40] [--before DIR]

Ten keys in a .env file, read three ways, each command run --runs times in interleaved
rounds (so machine noise hits all of them alike); prints each median and the ratios, of
wall time (the bar) and of CPU time (user + system of the process and its children, which
other load on a shared machine disturbs less).
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
import resource
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


def time_once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime


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
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (command, command_env) in commands.items():
                samples[name].append(time_once(command, directory, command_env))
    wall = {name: statistics.median(w for w, _ in runs) * 1000 for name, runs in samples.items()}
    cpu = {name: statistics.median(c for _, c in runs) * 1000 for name, runs in samples.items()}
    print(f"{args.runs} runs each, interleaved; medians          wall       CPU")
    for name in commands:
        print(f"  {name:<34} {wall[name]:7.1f} ms {cpu[name]:7.1f} ms")
    keyrun_name, dotenv_name, python_name = list(commands)[:3]
    ratios = [("keyrun / dotenv run", keyrun_name, dotenv_name),
              ("keyrun / python -c pass", keyrun_name, python_name)]
    if args.before:
        ratios += [("keyrun (before) / dotenv run", "keyrun (before)", dotenv_name),
                   ("keyrun / keyrun (before)", keyrun_name, "keyrun (before)")]
    for label, top, bottom in ratios:
        print(f"  {label:<34} {wall[top] / wall[bottom]:7.2f}x    {cpu[top] / cpu[bottom]:7.2f}x")


if __name__ == "__main__":
    main()
