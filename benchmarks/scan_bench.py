"""`keyrun scan` against `detect-secrets scan`: on an external corpus, and on a generated tree;
and `keyrun scan --staged` as a pre-commit hook runs it.

    python benchmarks/scan_bench.py --corpus ../shared/scan-corpus [--runs 3]
    python benchmarks/scan_bench.py [--megabytes 50] [--runs 3] [--keep DIR]
    python benchmarks/scan_bench.py --staged [--runs 30] [--before DIR]

With --staged, makes a git repository with a keyrun.toml whose profile reads a local .env
(ten keys), stages a commit of three files of ordinary code (Python, YAML, Markdown; about
30 KB, no key in them), and times, in interleaved rounds (so machine noise hits them alike),
`keyrun scan --staged` through its console script, `git diff --cached` alone (the floor: the
hook cannot be faster than reading the index) and `python -c pass`. Prints each median wall
and CPU time (user + system of the process and its children, which other load disturbs less),
the ratios, and the load average. Byte code is compiled first, as `pip install` does; with
--no-bytecode it is removed instead and never written (PYTHONDONTWRITEBYTECODE=1), so every
run compiles keyrun's modules (an editable install where byte code is not written).
--before DIR also times the keyrun package found in DIR (e.g. `git archive main keyrun | tar
-x -C DIR`) through the same console script, in the same rounds.

With --corpus, runs the corpus's own scorer (`score.py`, gitleaks' rule samples: see its
README) with both tools --runs times and prints, for each, literal-sample recall over the
corpus's focus rules (`focus.json`'s `_in_scope`), generated-sample recall there, literal
recall over every rule, the share of false-positive samples flagged, and the wall time of
the scan (median).

Without it:
Generates a git repository of about --megabytes of source-like files (Python, minified
JavaScript, npm lock files full of sha512 hashes, JSON, YAML, CSV, Markdown, .env files and
a few binaries), plants keys of every AI-provider format keyrun knows (plus AWS, GitHub,
Slack, Stripe and PEM keys) at known lines, commits everything, then runs both scanners on
the work tree, interleaved --runs times, each as its own process. Prints the median wall time
of each and how many planted keys each reported (a result on the planted key's line counts
as found, which is generous to either tool), and the results elsewhere (not planted).

keyrun runs through `keyrun scan --format json` when the CLI has the command, otherwise
through its Python API in a fresh interpreter. detect-secrets must be installed in the same
environment (`pip install detect-secrets`; the test extra has it).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import resource
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
BASE64 = ALNUM + "+/"
HEX = "0123456789abcdef"
WORDS = ["request", "response", "client", "server", "handler", "config", "value", "result",
         "error", "status", "session", "token", "user", "account", "project", "model", "agent",
         "prompt", "stream", "batch", "index", "vector", "embedding", "search", "query", "cache",
         "retry", "timeout", "deadline", "buffer"]


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


# provider -> (variable name, key maker); built by concatenation, never a literal key
AI_KEYS: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "openai": ("OPENAI_API_KEY", lambda r: "sk-proj-" + rand(r, 74, URLSAFE) + "T3Blbk"
               + "FJ" + rand(r, 74, URLSAFE)),
    "openai-service": ("OPENAI_API_KEY", lambda r: "sk-svcacct-" + rand(r, 156, URLSAFE)),
    "openai-legacy": ("OPENAI_API_KEY", lambda r: "sk-" + rand(r, 20) + "T3Blbk" + "FJ"
                      + rand(r, 20)),
    "anthropic": ("ANTHROPIC_API_KEY", lambda r: "sk-ant-" + "api03-" + rand(r, 93, URLSAFE)
                  + "AA"),
    "anthropic-admin": ("ANTHROPIC_ADMIN_KEY", lambda r: "sk-ant-" + "admin01-"
                        + rand(r, 93, URLSAFE) + "AA"),
    "google": ("GEMINI_API_KEY", lambda r: "AI" + "za" + "Sy" + rand(r, 33, URLSAFE)),
    "huggingface": ("HF_TOKEN", lambda r: "hf" + "_" + rand(r, 34, string.ascii_letters)),
    "groq": ("GROQ_API_KEY", lambda r: "gsk" + "_" + rand(r, 52)),
    "replicate": ("REPLICATE_API_TOKEN", lambda r: "r8" + "_" + rand(r, 37)),
    "perplexity": ("PERPLEXITY_API_KEY", lambda r: "pplx" + "-" + rand(r, 48)),
    "xai": ("XAI_API_KEY", lambda r: "xai" + "-" + rand(r, 80)),
    "openrouter": ("OPENROUTER_API_KEY", lambda r: "sk-or-" + "v1-" + rand(r, 64, HEX)),
    "pinecone": ("PINECONE_API_KEY", lambda r: "pcsk" + "_" + rand(r, 6) + "_" + rand(r, 63)),
    "langsmith": ("LANGSMITH_API_KEY", lambda r: "lsv2" + "_pt_" + rand(r, 32, HEX) + "_"
                  + rand(r, 10, HEX)),
    "mistral": ("MISTRAL_API_KEY", lambda r: rand(r, 32)),
    "cohere": ("COHERE_API_KEY", lambda r: rand(r, 40)),
}
OTHER_KEYS: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "aws": ("AWS_ACCESS_KEY_ID", lambda r: "AK" + "IA" + rand(r, 16, string.ascii_uppercase
                                                                + "234567")),
    "github": ("GITHUB_TOKEN", lambda r: "gh" + "p_" + rand(r, 36)),
    "slack": ("SLACK_BOT_TOKEN", lambda r: "xo" + "xb-" + rand(r, 12, string.digits) + "-"
              + rand(r, 13, string.digits) + "-" + rand(r, 24)),
    "stripe": ("STRIPE_SECRET_KEY", lambda r: "sk" + "_live_" + rand(r, 99)),
}


@dataclass(frozen=True)
class Planted:
    path: str
    line: int
    provider: str
    ai: bool


class TreeWriter:
    """Writes files of several kinds until the tree reaches its size, planting keys."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.size = 0
        self.count = 0
        self.planted: list[Planted] = []

    def write(self, name: str, lines: list[str]) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(line + "\n" for line in lines)
        path.write_text(data)
        self.size += len(data)
        self.count += 1

    def plant(self, name: str, lines: list[str], render: Callable[[str, str], str],
              keys: dict[str, tuple[str, Callable[[random.Random], str]]], ai: bool) -> None:
        provider = self.rng.choice(sorted(keys))
        variable, make = keys[provider]
        at = self.rng.randrange(len(lines) + 1)
        lines.insert(at, render(variable, make(self.rng)))
        self.planted = [p if p.path != name or p.line <= at else
                        Planted(p.path, p.line + 1, p.provider, p.ai) for p in self.planted]
        self.planted.append(Planted(name, at + 1, provider, ai))


def _python(rng: random.Random, n: int) -> list[str]:
    lines = ["import os", "import json", ""]
    for i in range(n):
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        lines += [f"def {a}_{b}_{i}({a}, {b}=None):",
                  f'    """Return the {a} for a {b}."""',
                  f"    {a}_id = hash(({a}, {b}, {rng.randrange(10**6)})) % 0x{rand(rng, 8, HEX)}",
                  f"    return json.dumps({{'{a}': {a}_id, '{b}': {b}}})", ""]
    return lines


def _lockfile(rng: random.Random, n: int) -> list[str]:
    lines = ["{", '  "lockfileVersion": 3,', '  "packages": {']
    for _ in range(n):
        name = rand(rng, 8, string.ascii_lowercase)
        lines += [f'    "node_modules/{name}": {{',
                  f'      "version": "{rng.randrange(9)}.{rng.randrange(20)}.{rng.randrange(9)}",',
                  f'      "resolved": "https://registry.npmjs.org/{name}/-/{name}-1.0.0.tgz",',
                  f'      "integrity": "sha512-{rand(rng, 86, BASE64)}=="',
                  "    },"]
    return [*lines, "  }", "}"]


def _minified(rng: random.Random, n: int) -> list[str]:
    parts = []
    for _ in range(n):
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        parts.append(f"function {a[:2]}{rand(rng, 3)}(e,t){{return e.{b}(t)||"
                     f'"{rand(rng, 12)}"}}var {b[:3]}{rand(rng, 2)}={rng.randrange(10**9)};')
    return ["".join(parts)]


def _csv(rng: random.Random, n: int) -> list[str]:
    return ["id,user,hash,score"] + [
        f"{i},{rand(rng, 8, string.ascii_lowercase)},{rand(rng, 40, HEX)},{rng.random():.6f}"
        for i in range(n)]


def _markdown(rng: random.Random, n: int) -> list[str]:
    lines = ["# Notes", ""]
    for _ in range(n):
        lines.append(" ".join(rng.choices(WORDS, k=14)) + ".")
        if rng.random() < 0.1:
            lines += ["", "```sh", "export OPENAI_API_KEY=sk-...your-key...", "```", ""]
    return lines


def _yaml(rng: random.Random, n: int) -> list[str]:
    lines = []
    for i in range(n):
        lines += [f"{rng.choice(WORDS)}_{i}:",
                  f"  name: {rand(rng, 10, string.ascii_lowercase)}",
                  f"  replicas: {rng.randrange(1, 9)}",
                  f"  image: repo/app@sha256:{rand(rng, 64, HEX)}"]
    return lines


RENDER: dict[str, Callable[[str, str], str]] = {
    "py": lambda var, key: f'{var.lower()} = os.environ.get("{var}", "{key}")',
    "json": lambda var, key: f'  "{var.lower()}": "{key}",',
    "yaml": lambda var, key: f"{var.lower()}: {key}",
    "env": lambda var, key: f"{var}={key}",
    "md": lambda var, key: f"    export {var}={key}",
    "csv": lambda var, key: f"0,{var.lower()},{key},0.5",
    "js": lambda var, key: f'var cfg={{{var.lower()}:"{key}"}};',
}
KINDS: list[tuple[str, Callable[[random.Random, int], list[str]], int]] = [
    ("py", _python, 40), ("json", _lockfile, 40), ("js", _minified, 600), ("csv", _csv, 150),
    ("md", _markdown, 60), ("yaml", _yaml, 60),
]


def generate(root: Path, megabytes: float, seed: int = 1) -> TreeWriter:
    rng = random.Random(seed)
    tree = TreeWriter(root, rng)
    target = megabytes * 1_000_000
    while tree.size < target:
        kind, make, size = rng.choice(KINDS)
        lines = make(rng, rng.randrange(size // 2, size * 2))
        name = f"pkg{tree.count % 40}/mod{tree.count}.{kind}"
        if kind == "js":  # minified: the key goes inside the one line
            name = name.replace(".js", ".min.js")
            if rng.random() < 0.15:
                _, maker = AI_KEYS[(provider := rng.choice(sorted(AI_KEYS)))]
                cut = rng.randrange(len(lines[0]))
                lines[0] = (lines[0][:cut] + RENDER["js"](AI_KEYS[provider][0], maker(rng))
                            + lines[0][cut:])
                tree.planted.append(Planted(name, 1, provider, True))
        elif rng.random() < 0.35:
            tree.plant(name, lines, RENDER[kind], AI_KEYS, True)
            if rng.random() < 0.3:
                tree.plant(name, lines, RENDER[kind], OTHER_KEYS, False)
        tree.write(name, lines)
        if rng.random() < 0.02:
            env_lines = [f"DEBUG={rng.choice(['true', 'false'])}", "PORT=8080"]
            for _ in range(3):
                tree.plant(f"svc{tree.count}/.env.example", env_lines, RENDER["env"],
                           AI_KEYS, True)
            tree.write(f"svc{tree.count}/.env.example", env_lines)
        if rng.random() < 0.01:
            blob = bytes([0x89]) + b"PNG\0" + rng.randbytes(200_000)
            (root / f"assets/img{tree.count}.png").parent.mkdir(exist_ok=True)
            (root / f"assets/img{tree.count}.png").write_bytes(blob)
            tree.size += len(blob)
    return tree


def git_commit_all(root: Path) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "tree"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)


def keyrun_command() -> list[str]:
    probe = subprocess.run([str(BIN / "keyrun"), "scan", "--help"], capture_output=True,
                           check=False)
    if probe.returncode == 0:
        return [str(BIN / "keyrun"), "scan", "--format", "json"]
    code = ("import json, pathlib; from keyrun.scan import scan; "
            "r = scan([], root=pathlib.Path.cwd()); "
            "print(json.dumps({'findings': [f.as_json() for f in r.findings]}))")
    return [sys.executable, "-c", code]


def run_keyrun(root: Path, command: list[str]) -> tuple[float, set[tuple[str, int]]]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"keyrun failed: {done.stderr.decode()}")
    found = json.loads(done.stdout)["findings"]
    return elapsed, {(f["path"], f["line"]) for f in found}


def run_detect_secrets(root: Path) -> tuple[float, set[tuple[str, int]]]:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "detect-secrets"), "scan", "."], cwd=root,
                          capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"detect-secrets failed: {done.stderr.decode()}")
    results = json.loads(done.stdout)["results"]
    return elapsed, {(path, r["line_number"]) for path, rs in results.items() for r in rs}


def report(name: str, times: list[float], found: set[tuple[str, int]],
           planted: list[Planted]) -> None:
    spots = {(p.path, p.line) for p in planted}
    ai = [p for p in planted if p.ai]
    other = [p for p in planted if not p.ai]
    ai_found = sum((p.path, p.line) in found for p in ai)
    other_found = sum((p.path, p.line) in found for p in other)
    missed = sorted({p.provider for p in ai if (p.path, p.line) not in found})
    each = ", ".join(f"{t:.2f}" for t in times)
    print(f"{name}: median {statistics.median(times):.2f} s ({each})"
          f"; AI-provider keys found {ai_found}/{len(ai)}; other keys {other_found}/{len(other)}"
          f"; results elsewhere {len(found - spots)}"
          + (f"; missed providers: {', '.join(missed)}" if missed else ""))


def print_by_provider(found: dict[str, set[tuple[str, int]]], planted: list[Planted]) -> None:
    print("\n| provider | planted | " + " | ".join(found) + " |")
    print("|---|---:|" + "---:|" * len(found))
    for provider in [*AI_KEYS, *OTHER_KEYS]:
        spots = [(p.path, p.line) for p in planted if p.provider == provider]
        counts = " | ".join(str(sum(s in f for s in spots)) for f in found.values())
        print(f"| {provider} | {len(spots)} | {counts} |")
    print()


CORPUS_MEASURES = (
    ("literal recall, focus rules", "tp_lit", "tp_lit_found", True),
    ("generated recall, focus rules", "tp_gen", "tp_gen_found", True),
    ("literal recall, all rules", "tp_lit", "tp_lit_found", False),
    ("false-positive samples flagged", "fp", "fp_flagged", False),
)


def corpus_totals(per_rule: dict[str, dict[str, int]], rules: set[str] | None
                  ) -> dict[str, int]:
    totals: dict[str, int] = {}
    for rule, counts in per_rule.items():
        if rules is None or rule in rules:
            for name in ("tp_lit", "tp_lit_found", "tp_gen", "tp_gen_found", "fp",
                         "fp_flagged"):
                totals[name] = totals.get(name, 0) + counts.get(name, 0)
    return totals


def run_corpus(corpus: Path, runs: int) -> None:
    """The corpus scorer with keyrun and detect-secrets, ``runs`` times; a table."""
    keyrun = shutil.which("keyrun", path=str(BIN)) or "keyrun"
    detect_secrets = shutil.which("detect-secrets", path=str(BIN)) or "detect-secrets"
    focus = set(json.loads((corpus / "focus.json").read_text())["_in_scope"])
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="keyrun-scan-corpus-") as scratch:
        for run in range(runs):
            out = Path(scratch) / f"run{run}.json"
            subprocess.run([sys.executable, str(corpus / "score.py"),
                            str(corpus / "gitleaks-samples.jsonl"), "--keyrun", keyrun,
                            "--groups", str(corpus / "focus.json"), "--detect-secrets",
                            detect_secrets, "--json", str(out)],
                           check=True, stdout=subprocess.DEVNULL)
            results.append(json.loads(out.read_text()))
    print("| | keyrun scan | detect-secrets scan |\n|---|---:|---:|")
    for label, total, found, focus_only in CORPUS_MEASURES:
        cells = []
        for tool in ("keyrun", "detect_secrets"):
            counts = corpus_totals(results[0][tool]["per_rule"], focus if focus_only else None)
            cells.append(f"{100 * counts[found] / counts[total]:.1f} % "
                         f"({counts[found]}/{counts[total]})")
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    times = {tool: [float(r[tool]["elapsed_s"]) for r in results]
             for tool in ("keyrun", "detect_secrets")}
    print("| scan wall time, median of {} | {:.2f} s ({}) | {:.1f} s ({}) |".format(
        runs, statistics.median(times["keyrun"]), ", ".join(f"{t:.2f}" for t in times["keyrun"]),
        statistics.median(times["detect_secrets"]),
        ", ".join(f"{t:.1f}" for t in times["detect_secrets"])))


STAGED_KEYS = [f"SERVICE_{i}_API_KEY" for i in range(10)]
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
                "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}


def staged_repository(root: Path) -> dict[str, str]:
    """A repository with a local profile and three staged files; the environment to run in."""
    rng = random.Random(7)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "KEYRUN_ENV",
                          "KEYRUN_CONFIG")}
    env.update(GIT_IDENTITY, KEYRUN_ACCESS_LOG=str(root.parent / "access.log"))
    (root / "keyrun.toml").write_text(
        'project = "bench"\n[keys]\n' + "".join(f"{key} = {{}}\n" for key in STAGED_KEYS)
        + '[sources.local]\ntype = "dotenv"\n[env.dev]\nsources = ["local"]\n')
    (root / ".env").write_text("".join(f"{key}=sk-bench-{i:02d}-{rand(rng, 40)}\n"
                                       for i, key in enumerate(STAGED_KEYS)))
    (root / ".env").chmod(0o600)
    (root / ".gitignore").write_text(".env\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, env=env, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "profile"], cwd=root, env=env, check=True)
    for name, make, count in (("app/service.py", _python, 80), ("deploy/values.yaml", _yaml, 60),
                              ("docs/usage.md", _markdown, 40)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("".join(f"{line}\n" for line in make(rng, count)))
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    return env


def time_once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run (exit status 0 expected)."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime


def run_staged(runs: int, before: Path | None, bytecode: bool) -> None:
    """`keyrun scan --staged` on a commit of three files, beside its floors; a table."""
    for package in (ROOT, *([before] if before is not None else [])):
        if bytecode:
            compileall.compile_dir(package / "keyrun", quiet=1)
        else:
            for cache in (package / "keyrun").rglob("__pycache__"):
                shutil.rmtree(cache)
    keyrun = [str(BIN / "keyrun"), "scan", "--staged"]
    with tempfile.TemporaryDirectory(prefix="keyrun-scan-staged-") as scratch:
        root = Path(scratch) / "repo"
        root.mkdir()
        env = staged_repository(root)
        if not bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        size = sum(len(subprocess.run(["git", "show", f":{name}"], cwd=root, check=True,
                                      capture_output=True).stdout)
                   for name in subprocess.run(["git", "diff", "--cached", "--name-only"],
                                              cwd=root, check=True, capture_output=True,
                                              text=True).stdout.split())
        commands = {"keyrun scan --staged": (keyrun, env)}
        if before is not None:
            commands["keyrun scan --staged (before)"] = (
                keyrun, dict(env, PYTHONPATH=str(before.resolve())))
        commands["git diff --cached"] = (["git", "diff", "--cached"], env)
        commands["python -c pass"] = ([sys.executable, "-c", "pass"], env)
        for name, (command, command_env) in commands.items():  # warm caches; check the run
            done = subprocess.run(command, cwd=root, env=command_env, capture_output=True,
                                  text=True, check=True)
            if name.startswith("keyrun") and "scanned 3 files, 0 findings" not in done.stderr:
                raise SystemExit(f"{name}: unexpected output: {done.stderr}")
        load = os.getloadavg()[0]
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, (command, command_env) in commands.items():
                samples[name].append(time_once(command, root, command_env))
    load = (load + os.getloadavg()[0]) / 2
    wall = {name: statistics.median(w for w, _ in runs_) * 1000
            for name, runs_ in samples.items()}
    cpu = {name: statistics.median(c for _, c in runs_) * 1000
           for name, runs_ in samples.items()}
    print(f"a staged commit of 3 files ({size / 1000:.1f} KB), local profile of "
          f"{len(STAGED_KEYS)} keys; {runs} runs each, interleaved; load average "
          f"{load:.1f} on {os.cpu_count()} CPUs" + ("" if bytecode else "; no byte code"))
    print(f"  {'medians':<34} {'wall':>10} {'CPU':>10}")
    for name in commands:
        print(f"  {name:<34} {wall[name]:7.1f} ms {cpu[name]:7.1f} ms")
    ratios = [("keyrun / git diff --cached", "keyrun scan --staged", "git diff --cached")]
    if before is not None:
        ratios.append(("keyrun / keyrun (before)", "keyrun scan --staged",
                       "keyrun scan --staged (before)"))
    for label, top, bottom in ratios:
        print(f"  {label:<34} {wall[top] / wall[bottom]:7.2f}x   {cpu[top] / cpu[bottom]:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="the scan corpus directory (score.py, "
                        "gitleaks-samples.jsonl, focus.json): score it instead of a tree")
    parser.add_argument("--megabytes", type=float, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="generate the tree here and keep it")
    parser.add_argument("--staged", action="store_true",
                        help="time `keyrun scan --staged` on a commit of three files")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="with --staged: a directory holding another keyrun package to "
                        "time as well")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="with --staged: remove byte code and write none")
    options = parser.parse_args()
    if options.staged:
        run_staged(options.runs, options.before, not options.no_bytecode)
        return
    if options.corpus is not None:
        run_corpus(options.corpus, options.runs)
        return
    root = options.keep or Path(tempfile.mkdtemp(prefix="keyrun-scan-bench-"))
    try:
        root.mkdir(parents=True, exist_ok=True)
        tree = generate(root, options.megabytes)
        git_commit_all(root)
        ai = sum(p.ai for p in tree.planted)
        print(f"tree: {tree.size / 1e6:.1f} MB, {tree.count} text files; planted "
              f"{ai} AI-provider keys of {len(AI_KEYS)} formats, "
              f"{len(tree.planted) - ai} other keys")
        command = keyrun_command()
        print("keyrun through", "its CLI" if command[1] == "scan" else "its Python API")
        times: dict[str, list[float]] = {"keyrun scan": [], "detect-secrets scan": []}
        found: dict[str, set[tuple[str, int]]] = {}
        for _ in range(options.runs):
            elapsed, found["keyrun scan"] = run_keyrun(root, command)
            times["keyrun scan"].append(elapsed)
            elapsed, found["detect-secrets scan"] = run_detect_secrets(root)
            times["detect-secrets scan"].append(elapsed)
        for name in times:
            report(name, times[name], found[name], tree.planted)
        print_by_provider(found, tree.planted)
        ratio = statistics.median(times["keyrun scan"]) / statistics.median(
            times["detect-secrets scan"])
        print(f"keyrun / detect-secrets wall time = {ratio:.3f}×")
    finally:
        if options.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
