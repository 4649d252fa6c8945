"""Every example configuration parses and every source in it validates; the runnable
examples run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keyrun.config import environment, parse_config
from keyrun.profile import make_source
from keyrun.sources import Context
from tests.helpers import clean_env, write

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIGS = sorted([*EXAMPLES.glob("sources/*.toml"), *EXAMPLES.glob("*/keyrun.toml")])


def test_there_is_one_example_per_source_type() -> None:
    from keyrun.sources.registry import BUILTIN

    assert {path.stem for path in EXAMPLES.glob("sources/*.toml")} == set(BUILTIN)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_config_is_valid(path: Path) -> None:
    config = parse_config(path, path.read_text())
    for env in config.envs:
        environment(config, env)
        for spec in config.sources.values():
            make_source(spec.type, spec.name, spec.settings, spec.where,
                        Context(config.project, env, config.root, {}))


def test_agent_example_runs(tmp_path: Path) -> None:
    root = tmp_path / "agent"
    for name in ("keyrun.toml", "agent.py"):
        write(root / name, (EXAMPLES / "agent" / name).read_text())
    write(root / ".env", "OPENAI_API_KEY=sk-example-0123456789\nVOYAGE_API_KEY=pa-example-0123456789\n"
          "TAVILY_API_KEY=tvly-example-012345\n")
    env = clean_env(tmp_path)
    doctor = subprocess.run([sys.executable, "-m", "keyrun", "doctor", "--json"], cwd=root,
                            env=env, capture_output=True, text=True, check=False)
    assert '"missing-keys"' in doctor.stdout
    done = subprocess.run([sys.executable, "-m", "keyrun", "-q", "--", sys.executable, "agent.py",
                           "what is keyrun?"], cwd=root, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("agent: answering 'what is keyrun?' with a 21-character LLM key, a "
                           "21-character embedding key and tools ['search']\n")


def test_docker_app_stops_on_sigterm(tmp_path: Path) -> None:
    import signal

    root = tmp_path / "docker"
    write(root / "app.py", (EXAMPLES / "docker" / "app.py").read_text())
    write(root / "keyrun.toml", """
[keys]
OPENAI_API_KEY = {}
[sources.local]
type = "dotenv"
[env.production]
sources = ["local"]
""")
    write(root / ".env", "OPENAI_API_KEY=sk-docker-0123456789\n")
    process = subprocess.Popen([sys.executable, "-m", "keyrun", "-e", "production", "--",
                                sys.executable, "app.py"], cwd=root, env=clean_env(tmp_path),
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert "OPENAI_API_KEY is set" in process.stdout.readline()
    process.send_signal(signal.SIGTERM)  # what `docker stop` sends to the entrypoint
    assert process.wait(10) == 0
    assert process.stdout.read() == "app: got SIGTERM, shutting down\n"


def test_aws_ssm_example_reads_what_its_comments_say() -> None:
    from keyrun.profile import resolve_profile

    path = EXAMPLES / "sources" / "aws-ssm.toml"
    config = parse_config(path, path.read_text())
    for env, source in (("prod", "params"), ("prod-tree", "tree")):
        profile = resolve_profile(config, env, environ={})
        binding = next(b for b in profile.bindings if b.key == "DATABASE_URL")
        where = profile.sources[source].locate(profile.request(binding, source))
        assert where == "/support-bot/prod/db/url", (env, where)


def test_quickstart_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """The README's first command, as a new user sees it: the agent's lines and keyrun's
    expected note about the optional key it runs without."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    shown = readme.split("```text\n", 1)[1].split("```", 1)[0]
    done = subprocess.run([sys.executable, "-m", "keyrun", "--", sys.executable, "agent.py"],
                          cwd=EXAMPLES / "quickstart", env=clean_env(tmp_path),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == shown
