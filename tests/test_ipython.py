"""%load_ext keyrun in a real IPython shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_env, write

SCRIPT = """
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "keyrun")
ip.run_line_magic("keyrun", "--list staging")
ip.run_line_magic("keyrun", "staging")
import os
print("value ok:", os.environ.get("OPENAI_API_KEY") == "sk-ipython-123456789")
ip.run_line_magic("keyrun", "nope")
"""


def test_magic(tmp_path: Path) -> None:
    root = tmp_path / "nb"
    write(root / "keyrun.toml", """
[keys]
OPENAI_API_KEY = {}
[sources.local]
type = "dotenv"
[env.staging]
sources = ["local"]
""")
    write(root / ".env", "OPENAI_API_KEY=sk-ipython-123456789\n")
    env = clean_env(tmp_path, IPYTHONDIR=str(tmp_path / "ipython"))
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines[:3] == ["keyrun: nb/staging", "  OPENAI_API_KEY               ok        local",
                         "keyrun: nb/staging: set OPENAI_API_KEY"], done.stdout + done.stderr
    assert "value ok: True" in lines
    assert "keyrun: error:" in done.stdout
    assert "unknown environment 'nope'" in done.stdout
    assert "sk-ipython-123456789" not in done.stdout + done.stderr
    assert os.environ.get("OPENAI_API_KEY") != "sk-ipython-123456789"
