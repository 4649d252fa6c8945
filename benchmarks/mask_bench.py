"""Masking throughput: 200 MB of mixed text and binary through keyrun's masking relay.

    python benchmarks/mask_bench.py [--size-mb 200] [--rounds 3] [--via launcher|cli]

One data file (log lines, random binary, base64 and hex blocks, with the registered values
planted in raw and encoded forms), read by this script from a pipe, in interleaved rounds:

- ``cat FILE``: the pipe alone. ``keyrun run`` without --mask execs, so this is it.
- ``cat FILE | cat``: one more process copying every byte (the least a relay costs).
- relay, no values: keyrun staying the parent, nothing to match.
- relay, 100 values: ``--mask`` with 100 values registered (their variants: ~2,500
  patterns), with the default engine (Hyperscan) and with ``ahocorasick-rs``.

keyrun's bytecode is compiled first (as an installed keyrun has it): with
PYTHONDONTWRITEBYTECODE set, every start would otherwise compile its sources again.
``--baseline DIR`` also times the keyrun in DIR (an older checkout) in the same rounds.

``--via launcher`` (default) calls ``keyrun.relay.relay`` from a three-line launcher, as
the CLI does; ``--via cli`` runs ``keyrun -e bench run --mask -- cat FILE`` for real.
``--terminal-mb`` also times the launcher's rows with stdout on a pseudo-terminal.
The masked output is checked once against ``MaskSet.mask`` of the whole file (so every
split the pipe made gave the same bytes) and must not hold a registered value. Also
prints the masker's own speed in-process, per matching engine.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import fcntl
import hashlib
import json
import os
import pty
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyrun.mask import ENGINES, MaskSet  # noqa: E402
from tests.helpers import read_to_end  # noqa: E402

LAUNCHER = """
import json, os, sys
from keyrun.mask import MaskSet
from keyrun.relay import relay
values = json.loads(os.environ.pop("BENCH_VALUES"))
relay(sys.argv[1:], dict(os.environ), MaskSet(values, os.environ.pop("BENCH_ENGINE") or None))
"""
WORDS = ["request", "response", "token", "user", "config", "value", "agent", "model",
         "stream", "error", "warning", "info", "debug", "retry", "latency", "upstream", "cache",
         "session", "tool", "call", "completion"]


def make_values(count: int = 100, seed: int = 7) -> dict[str, str]:
    rnd = random.Random(seed)
    alnum = string.ascii_letters + string.digits
    values = {}
    for i in range(count):
        kind = i % 4
        if kind == 0:
            value = "sk-proj-" + "".join(rnd.choices(alnum + "-_", k=rnd.randint(40, 120)))
        elif kind == 1:
            value = rnd.randbytes(16).hex()
        elif kind == 2:
            value = base64.b64encode(rnd.randbytes(30)).decode()
        else:
            value = "".join(rnd.choices(alnum + "!@#%/+= ", k=rnd.randint(8, 32)))
        values[f"KEY_{i:03d}"] = value
    return values


def _planted(rnd: random.Random, value: str) -> bytes:
    forms: list[Callable[[str], bytes]] = [
        lambda v: v.encode(),
        lambda v: base64.b64encode(f"svc:{v}".encode()),
        lambda v: json.dumps({"api_key": v}).encode(),
        lambda v: quote(v, safe="").encode(),
        lambda v: v.encode().hex().encode(),
    ]
    return b"secret=" + rnd.choice(forms)(value) + b"\n"


def _block(rnd: random.Random, values: Sequence[str]) -> bytes:
    kind = rnd.random()
    if kind < 0.5:
        lines = []
        for _ in range(rnd.randint(50, 400)):
            if rnd.random() < 0.02:
                lines.append(_planted(rnd, rnd.choice(values)))
            else:
                words = " ".join(rnd.choices(WORDS, k=rnd.randint(4, 16)))
                lines.append(f"2026-11-27T10:00:{rnd.randint(0, 59):02d}Z INFO {words}\n".encode())
        return b"".join(lines)
    if kind < 0.75:
        return rnd.randbytes(rnd.randint(4096, 65536))
    if kind < 0.9:
        return base64.encodebytes(rnd.randbytes(rnd.randint(3000, 48000)))
    return rnd.randbytes(rnd.randint(2000, 24000)).hex().encode() + b"\n"


def make_data(path: Path, size: int, values: Sequence[str], seed: int = 11) -> None:
    rnd = random.Random(seed)
    pool = [_block(rnd, values) for _ in range(1500)]
    written = 0
    with path.open("wb") as out:
        while written < size:
            block = rnd.choice(pool)[: size - written]
            out.write(block)
            written += len(block)


def read_all(command: Sequence[str], env: dict[str, str], digest: bool = False,
             shell: bool = False) -> tuple[float, int, str]:
    """Seconds from start to EOF of the command's stdout, bytes read, sha256 if asked."""
    hasher = hashlib.sha256() if digest else None
    start = time.perf_counter()
    process = subprocess.Popen(command if not shell else " ".join(command), shell=shell,
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    fd = process.stdout.fileno()
    setting = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setting is not None:
        fcntl.fcntl(fd, setting, 1 << 20)
    total = 0
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
        if hasher is not None:
            hasher.update(chunk)
    status = process.wait()
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{command[0]} exited with {status}")
    return elapsed, total, hasher.hexdigest() if hasher else ""


def read_all_on_terminal(command: Sequence[str], env: dict[str, str]) -> tuple[float, int]:
    """The same, with the command's stdout a pseudo-terminal (so the relay uses one too)."""
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(command[0], list(command), env)
    total = len(read_to_end(fd, timeout=600))
    os.waitpid(pid, 0)
    os.close(fd)
    return time.perf_counter() - start, total


def on_terminal(data: Path, size: int, values: dict[str, str], rounds: int,
                baseline: Path | None) -> None:
    """Not part of the bar: a terminal is read a few KiB at a time, through two of them."""
    text = data.parent / "terminal.txt"
    with data.open("rb") as source:
        text.write_bytes(base64.encodebytes(source.read(size * 3 // 4)))
    table = {name: command for name, command
             in commands(text, "launcher", data.parent, baseline).items()
             if "|" not in command and "ahocorasick" not in name}
    timings: dict[str, list[float]] = {}
    for _round in range(rounds):
        for name, command in table.items():
            env = environment(name, values, data.parent, baseline)
            elapsed, total = read_all_on_terminal(command, env)
            assert total > 0
            timings.setdefault(name, []).append(elapsed)
    print(f"\non a pseudo-terminal ({text.stat().st_size >> 20} MB of base64 text):")
    for name, runs in timings.items():
        print(f"| `{name}` | {text.stat().st_size / statistics.median(runs) / 1e6:.0f} MB/s |")


def cli_setup(directory: Path, values: dict[str, str]) -> None:
    (directory / ".env").write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in values.items()))
    (directory / ".env").chmod(0o600)
    (directory / "keyrun.toml").write_text(
        'project = "bench"\n[keys]\n' + "".join(f"{key} = {{}}\n" for key in values)
        + '[sources.local]\ntype = "dotenv"\n[env.bench]\nsources = ["local"]\n')


def commands(data: Path, via: str, directory: Path,
             baseline: Path | None = None) -> dict[str, list[str]]:
    """Name → command; with ``baseline``, each keyrun row again as "NAME (baseline)"."""
    cat = ["cat", str(data)]
    if via == "cli":
        keyrun = [sys.executable, "-m", "keyrun", "-q", "-e", "bench", "run"]
        table = {"cat FILE": cat, "cat FILE | cat": ["cat", str(data), "|", "cat"],
                 "keyrun run (exec)": [*keyrun, "--", *cat],
                 "keyrun run --mask": [*keyrun, "--mask", "--", *cat]}
    else:
        launcher = [sys.executable, "-c", LAUNCHER]
        table = {"cat FILE": cat, "cat FILE | cat": ["cat", str(data), "|", "cat"],
                 "relay, no values": [*launcher, *cat], "relay, 100 values": [*launcher, *cat],
                 "relay, 100 values, ahocorasick": [*launcher, *cat]}
    if baseline is not None:
        table |= {f"{name} (baseline)": command for name, command in table.items()
                  if "keyrun" in name or "relay" in name}
    return table


def environment(name: str, values: dict[str, str], directory: Path,
                baseline: Path | None = None) -> dict[str, str]:
    root = baseline if baseline is not None and name.endswith("(baseline)") else ROOT
    env = dict(os.environ, PYTHONPATH=str(root), KEYRUN_ACCESS_LOG="off")
    env["BENCH_VALUES"] = json.dumps({} if "no values" in name else values)
    env["BENCH_ENGINE"] = "ahocorasick" if "ahocorasick" in name else ""
    return env


def in_process(data: bytes, values: dict[str, str]) -> list[tuple[str, float, float]]:
    results = []
    for engine in ENGINES[:2]:
        try:
            start = time.perf_counter()
            masks = MaskSet(values, engine=engine)
            built = time.perf_counter() - start
        except Exception as exc:
            print(f"  {engine}: not available ({exc})")
            continue
        masker = masks.stream()
        start = time.perf_counter()
        for offset in range(0, len(data), 1 << 16):
            masker.feed(data[offset:offset + (1 << 16)])
        masker.close()
        results.append((engine, len(data) / (time.perf_counter() - start) / 1e6, built))
    return results


def seed_lengths(data: bytes, values: dict[str, str], rounds: int) -> None:
    """Hyperscan's compile time and scan speed by seed length (keyrun.mask uses 5)."""
    from keyrun.mask import HyperscanEngine, variants

    patterns = sorted({form for value in values.values() for form in variants(value)})
    default, timings = HyperscanEngine.SEED, {}
    try:
        for _round in range(rounds):
            for seed in (6, 5, 4):
                HyperscanEngine.SEED = seed
                start = time.perf_counter()
                engine = HyperscanEngine(patterns)
                built = time.perf_counter() - start
                start = time.perf_counter()
                for offset in range(0, len(data), 1 << 20):
                    engine.scan(data[offset:offset + (1 << 20)])
                timings.setdefault(seed, []).append((built, time.perf_counter() - start))
    finally:
        HyperscanEngine.SEED = default
    print(f"\nseed length ({len(patterns)} patterns, {len(data) >> 20} MB in 1 MiB scans):")
    print("| seed | compile | scan |\n|---|---|---|")
    for seed, runs in timings.items():
        built = statistics.median(run[0] for run in runs)
        scanned = statistics.median(run[1] for run in runs)
        print(f"| {seed} bytes | {built * 1000:.0f} ms | {len(data) / scanned / 1e6:.0f} MB/s |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--via", choices=("launcher", "cli"), default="launcher")
    parser.add_argument("--terminal-mb", type=int, default=20,
                        help="also time this much on a pseudo-terminal (0: skip)")
    parser.add_argument("--seeds", action="store_true",
                        help="also time Hyperscan's compile and scan by seed length")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout of keyrun (before a change): its masking rows "
                             "are timed in the same rounds")
    args = parser.parse_args()
    for root in (ROOT, args.baseline):
        if root is not None:  # as installed: bytecode compiled once, not at every start
            compileall.compile_dir(root / "keyrun", quiet=1)
    values = make_values()
    with tempfile.TemporaryDirectory(prefix="keyrun-mask-bench-") as tmp:
        directory = Path(tmp)
        data = directory / "data.bin"
        make_data(data, args.size_mb << 20, list(values.values()))
        cli_setup(directory, values)
        os.chdir(directory)
        masks = MaskSet(values)
        print(f"{args.size_mb} MB, {len(values)} values, {len(masks)} patterns, "
              f"engine {masks.engine}")
        verify(data, masks, values, commands(data, args.via, directory), args.via)
        timings: dict[str, list[float]] = {}
        table = commands(data, args.via, directory, args.baseline)
        for _round in range(args.rounds):
            for name, command in table.items():
                shell = "|" in command
                env = environment(name, values, directory, args.baseline)
                elapsed, total, _ = read_all(command, env, shell=shell)
                assert total > 0
                timings.setdefault(name, []).append(elapsed)
        size = data.stat().st_size
        print("\n| command | median | MB/s |\n|---|---|---|")
        for name, runs in timings.items():
            median = statistics.median(runs)
            print(f"| `{name}` | {median:.2f} s | {size / median / 1e6:.0f} |")
        print("\nmasker in-process (64 KiB feeds, no pipes):")
        content = data.read_bytes()[: 64 << 20]
        for engine, speed, built in in_process(content, values):
            print(f"  {engine}: {speed:.0f} MB/s (compiled in {built * 1000:.0f} ms)")
        if args.seeds:
            seed_lengths(content[: 32 << 20], values, max(args.rounds, 5))
        if args.terminal_mb:
            on_terminal(data, args.terminal_mb << 20, values, args.rounds, args.baseline)


def verify(data: Path, masks: MaskSet, values: dict[str, str],
           table: dict[str, list[str]], via: str) -> None:
    name = "keyrun run --mask" if via == "cli" else "relay, 100 values"
    env = environment(name, values, data.parent)
    _elapsed, _total, digest = read_all(table[name], env, digest=True)
    expected = masks.mask(data.read_bytes())
    if hashlib.sha256(expected).hexdigest() != digest:
        raise SystemExit("the relay's output differs from masking the whole file at once")
    leaked = [key for key, value in values.items() if value.encode() in expected]
    if leaked:
        raise SystemExit(f"values left in the output: {leaked}")
    print(f"output verified: {expected.count(b'<KEY_')} spans masked, "
          f"identical to masking the whole file at once")


if __name__ == "__main__":
    main()
