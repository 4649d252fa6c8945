"""keyrun list: previews by the one policy, problems folded by cause, columns that fit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import assert_no_leak, clean_env, dotenv_project, keyrun

VALUES = {
    "SHORT": "pw-0123456",  # 10 characters: nothing shown
    "PASSWORD": "hunter-7b2Kq9",  # 13: at most 3 (list showed 7 of 12 before)
    "SIXTEEN": "tok-9f8e7d6c5b4a",  # 16: a quarter, 4; the head alone fits
    "OPENAI_API_KEY": "sk-proj-" + "Zq7" * 13 + "a1b2",  # 51: the documented head and tail
}


def test_list_previews_show_a_quarter_at_most(tmp_path: Path) -> None:
    root = dotenv_project(tmp_path / "bot", VALUES)
    done = keyrun(["list", "--json"], cwd=root, env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    previews = {row["name"]: row["preview"] for row in json.loads(done.stdout)["keys"]}
    assert previews == {"SHORT": None, "PASSWORD": "hun…", "SIXTEEN": "tok…",
                        "OPENAI_API_KEY": "sk-…a1b2"}
    for name, value in VALUES.items():
        shown = previews[name] or ""
        assert len(shown.replace("…", "")) <= len(value) // 4
        assert_no_leak(value, done.stdout, done.stderr)
