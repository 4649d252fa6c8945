"""keyrun list: previews by the one policy, problems folded by cause, columns that fit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.doppler_server import CONFIG
from tests.helpers import assert_no_leak, clean_env, dotenv_project, free_port, keyrun

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


def test_a_dead_source_is_one_line_per_cause(tmp_path: Path) -> None:
    """12 keys on a source that is down: run, list and doctor say it once, naming them."""
    names = [f"TOOL_{i:02d}_API_KEY" for i in range(12)]
    root = tmp_path / "bot"
    root.mkdir()
    port = free_port()
    config = CONFIG.format(url=f"http://127.0.0.1:{port}", timeout="2s")
    (root / "keyrun.toml").write_text(config.replace(
        "OPENAI_API_KEY = {}\nANTHROPIC_API_KEY = {}", "\n".join(f"{name} = {{}}" for name in names)))
    env = clean_env(tmp_path, DOPPLER_TOKEN="dp.st.dev.x")
    run = keyrun(["--", "true"], cwd=root, env=env)
    assert run.returncode == 125
    lines = run.stderr.splitlines()
    assert lines[0] == "keyrun: error: cannot run with bot/dev:"
    assert lines[1].startswith(f"  {', '.join(names)}: doppler: ")
    assert len(lines) == 3, run.stderr  # the one cause, and the hint
    assert lines[2].startswith("  hint: ")

    listed = keyrun(["list"], cwd=root, env=env)
    assert listed.returncode == 0
    problems = listed.stdout.split("\n\n", 1)[1].splitlines()
    assert len(problems) == 1, listed.stdout
    assert problems[0].startswith(f"{', '.join(names)}: doppler: ")
    assert problems[0] == lines[1].strip()

    doctor = keyrun(["doctor", "--json"], cwd=root, env=env)
    missing = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["missing-keys"]
    assert missing["message"] == lines[1].strip()
    assert missing["keys"] == names
