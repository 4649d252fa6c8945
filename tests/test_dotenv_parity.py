"""Other projects' ``.env`` test cases through the real CLI (SPEC §5: every value is
exactly what python-dotenv reads, or the run is refused with the file and line).

Each case becomes a directory holding only that ``.env``; ``python -m keyrun -- python
dump.py`` runs there (zero-config mode), and the command's environment is compared with
python-dotenv's own ``dotenv_values`` of the same file in the same environment.
``python tests/test_dotenv_parity.py`` prints the counts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import dotenv
from dotenv_cases import Case, all_cases

_ENVIRON_LOCK = threading.Lock()  # python-dotenv reads os.environ: one case at a time
logging.getLogger("dotenv.main").disabled = True  # its own parse warnings
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DUMP = "import json, os, sys\nsys.stdout.write(json.dumps(dict(os.environ)))\n"


@dataclass
class Outcome:
    case: Case
    status: str  # "ran", "refused" or "crashed"
    values: int = 0  # what python-dotenv reads that a variable can hold
    matched: int = 0
    left_out: int = 0  # names no variable can have, left out with a warning
    mangled: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    detail: str = ""


def run_case(case: Case, root: Path) -> Outcome:
    folder = root / re.sub(r"[^A-Za-z0-9]+", "-", case.name)
    folder.mkdir(parents=True)
    env_file = folder / ".env"
    env_file.write_bytes(case.text.encode("utf-8"))
    environ = {"PATH": os.environ["PATH"], "HOME": str(root), "LANG": "C.UTF-8",
               "KEYRUN_ACCESS_LOG": "off", "XDG_CONFIG_HOME": str(root / "config"),
               "XDG_STATE_HOME": str(root / "state"), **case.environ}
    with _ENVIRON_LOCK, mock.patch.dict(os.environ, environ, clear=True):
        expected = dotenv.dotenv_values(env_file)
    result = subprocess.run([sys.executable, "-m", "keyrun", "--", sys.executable,
                             str(root / "dump.py")], cwd=folder, env=environ,
                            capture_output=True, text=True, timeout=60)
    outcome = Outcome(case, _status(result, env_file))
    outcome.detail = result.stderr
    outcome.leaked = _leaks(case.text, expected, result.stderr + (
        "" if result.returncode == 0 else result.stdout))
    passable = {k: v for k, v in expected.items() if v is not None and NAME.match(k)}
    outcome.values = len(passable)
    outcome.left_out = sum(1 for k, v in expected.items() if v is not None and not NAME.match(k))
    if outcome.status != "ran":
        return outcome
    try:
        child = json.loads(result.stdout)
    except json.JSONDecodeError:
        outcome.status, outcome.detail = "crashed", f"no environment dumped: {result.stderr}"
        return outcome
    for key, value in passable.items():
        if child.get(key) == value:
            outcome.matched += 1
        else:
            outcome.mangled.append(key)
    extra = set(child) - set(environ) - set(passable) - {"KEYRUN_PROFILE"}
    outcome.mangled += sorted(extra)  # a name python-dotenv does not read
    for key, value in expected.items():
        if value is not None and not NAME.match(key) and repr(key) not in result.stderr:
            outcome.mangled.append(f"{key!r} left out without a warning")
    return outcome


def _status(result: subprocess.CompletedProcess[str], env_file: Path) -> str:
    if "Traceback" in result.stderr or result.returncode not in (0, 125):
        return "crashed"
    if result.returncode == 0:
        return "ran"
    return "refused" if re.search(rf"{re.escape(str(env_file))}:\d+: ", result.stderr) else "crashed"


def _leaks(text: str, expected: dict[str, str | None], output: str) -> list[str]:
    """Values (or lines of a multi-line value, or the text after ``=`` as written) that
    keyrun's output repeats. Lower-case words and phrases ("parsed", "double quotes")
    are left out: keyrun's messages are made of them, a secret rarely is."""
    names = set(expected) | set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", text)) & set(expected)
    pieces = set()
    for value in expected.values():
        for line in (value or "").splitlines():
            if len(line.strip()) >= 5 and line.strip() not in names:
                pieces.add(line.strip())
    for line in text.splitlines():
        written = line.partition("=")[2].strip()
        if len(written) >= 5:
            pieces.add(written)
    return sorted(piece for piece in pieces
                  if piece in output and not re.fullmatch(r"[a-z ]+", piece))


def run_all(root: Path) -> list[Outcome]:
    cases = all_cases()
    (root / "dump.py").write_text(DUMP)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda case: run_case(case, root), cases))


def summary(outcomes: list[Outcome]) -> str:
    status = Counter(o.status for o in outcomes)
    values = sum(o.values for o in outcomes)
    matched = sum(o.matched for o in outcomes)
    refused = sum(o.values for o in outcomes if o.status == "refused")
    mangled = sum(len(o.mangled) for o in outcomes)
    leaked = sum(len(o.leaked) for o in outcomes)
    return (f"{len(outcomes)} cases ({status['ran']} ran, {status['refused']} refused, "
            f"{status['crashed']} crashed); {values} values: {matched} matched python-dotenv, "
            f"{refused} in refused runs, {mangled} mangled; "
            f"{sum(o.left_out for o in outcomes)} invalid names left out; "
            f"{leaked} value pieces in keyrun's output")


def test_every_case_matches_python_dotenv_or_is_refused(tmp_path: Path) -> None:
    outcomes = run_all(tmp_path)
    print(summary(outcomes))
    assert len(outcomes) >= 150
    problems = [
        f"{o.case.name}: {o.status}; mangled {o.mangled}; leaked {len(o.leaked)} pieces"
        + (f"\n{o.detail}" if o.status == "crashed" else "")
        for o in outcomes if o.status == "crashed" or o.mangled or o.leaked
    ]
    assert problems == []
    assert {o.status for o in outcomes} == {"ran", "refused"}
    foreign = [o for o in outcomes if FOREIGN.search(o.case.text)]
    assert len(foreign) >= 6  # measured: 6 of the vendored cases
    assert [o.case.name for o in foreign if o.status != "refused"] == []


# Files as people write (and mangle) them, by hand: line ends of other systems, a byte-order
# mark, names no variable can have, quotes that close lines later, ${ cut off at the end.
V = "Zq8-v41ue"  # a value no message may repeat
HAND_WRITTEN = [Case(f"hand/{name}", text) for name, text in {
    "crlf": f"A={V}1\r\nB='{V}2'\r\nC=\"{V}3\"\r\n",
    "crlf-multi-line": f'KEY="-----BEGIN-----\r\n{V}\r\n-----END-----"\r\nNEXT=1\r\n',
    "crlf-single-quotes": f"KEY='{V}\r\nline 2'\r\n",
    "lone-cr-in-quotes": f'KEY="{V}\rline 2"\nNEXT=1\n',
    "cr-line-ends": f"A={V}\rB=2\r",
    "bom": f"\ufeffA={V}\nB=2\n",
    "bom-export": f"\ufeffexport A={V}\n",
    "export": f"export A={V}\nexport  B=2\nexport\tC=3\nexport=4\n",
    "odd-names": f"CLÉ={V}\n'A=B'={V}\n1A={V}\n-A={V}\nOK=1\n",
    "duplicates": f"A=first\nexport A={V}\n",
    "quote-closes-later": f'A="{V}\nB=2\nC="\nD=4\n',
    "quote-never-closes": f'B=2\nA="{V}',
    "comments": f"A={V} # c\nB='{V}' # c\nC=\"{V}\"#c\nD={V}#not-a-comment\nE= # only a note\n",
    "hash-in-quotes": f"A='{V}#x'\nB=\"{V}#y\"\n",
    "escaped-quotes": f'A="{V}\\"q\\""\nB=\'{V}\\\'q\\\'\'\n',
    "backslash-n": f"A='{V}\\n'\nB=\"{V}\\n\"\nC={V}\\n\n",
    "dollar-brace-last-line": "A=1\nB=${A",
    "dollar-brace-last-line-nl": "A=1\nB=\"${A\"\n",
    "empty": "",
    "only-comments": "# one\n   # two\n#three=3\n\n\t\n",
    "heredoc": f"A=<<EOF\n{V}\nEOF\n",
    "yaml": f"A: {V}\n",
    "ini-section": f"[section]\nA={V}\n",
    "name-in-a-quoted-value": f'KEY="{V}\nOTHER=1"\n',
    "long-line": f"A={V}{'x' * 100_000}\nB=2\n",
}.items()]


def test_files_written_by_hand_match_python_dotenv_or_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dump.py").write_text(DUMP)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = {o.case.name.removeprefix("hand/"): o
                    for o in pool.map(lambda case: run_case(case, tmp_path), HAND_WRITTEN)}
    problems = [f"{name}: {o.status}; mangled {o.mangled}; leaked {o.leaked}\n{o.detail}"
                for name, o in outcomes.items() if o.status == "crashed" or o.mangled or o.leaked]
    assert problems == []
    ran = {name for name, o in outcomes.items() if o.status == "ran"}
    assert {"crlf", "crlf-multi-line", "crlf-single-quotes", "lone-cr-in-quotes", "bom",
            "export", "comments", "long-line"} <= ran
    assert {"quote-closes-later", "quote-never-closes", "heredoc", "yaml", "ini-section",
            "name-in-a-quoted-value", "dollar-brace-last-line"} <= set(outcomes) - ran


# Forms other tools read differently (SPEC §5), spotted in the raw text: a value opening
# with a backtick, a shell operator in ${…}, a ${…} inside a default.
FOREIGN = re.compile(r"^[^#\n]*?=\s*`|^[^#\n]*\$\{\w+(?:[-=?+]|:[=?+])|^[^#\n]*\$\{[^}\n]*\$\{", re.M)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        results = run_all(Path(scratch))
    for o in results:
        if o.status == "crashed" or o.mangled or o.leaked:
            print(f"{o.case.name}: {o.status} mangled={o.mangled} leaked={o.leaked}")
            print("   ", repr(o.case.text)[:200], o.case.environ)
            print("   ", o.detail.strip().replace("\n", "\n    ")[:600])
    print(summary(results))
