"""%keyrun --help and %keyrun? show the magic's usage, in a real IPython shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_env

SCRIPT = """
import io, contextlib
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "keyrun")
result = ip.run_cell("%keyrun --help")
print("[help:", "ok]" if result.success else "failed]")
print(ip.find_line_magic("keyrun").__doc__)
shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    ip.run_line_magic("pinfo", "%keyrun")
print("[pinfo]", "usage: %keyrun [ENV | -e ENV]" in shown.getvalue())
"""


def test_help_and_question_mark_show_the_usage(tmp_path: Path) -> None:
    env = clean_env(tmp_path, IPYTHONDIR=str(tmp_path / "ipython"))
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    usage = ("usage: %keyrun [ENV | -e ENV] [--list] [-c CONFIG] [-p PROJECT] "
             "[--preserve-env] [--allow-missing]")
    assert out.count(usage) == 2  # printed by --help, and the magic's docstring
    assert "[help: ok]" in out
    assert "  --allow-missing              inject what resolves" in out
    assert "[pinfo] True" in out
