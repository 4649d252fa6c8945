"""A checkout's configuration must not turn keyrun against its user (issue 12, SPEC §5
"Trust", "Reserved names (complete)", "No core file, ever", "What keyrun writes is its own").

Every test here plays the attacker against keyrun run as a real process, and fails on the
code before the fix it covers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from keyrun.environ import is_reserved
from tests.helpers import CANARY, clean_env, keyrun, write


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path)


# -- reserved names ----------------------------------------------------------------------------


def _git_repository(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


FSMONITOR = ("GIT_CONFIG_COUNT=1\nGIT_CONFIG_KEY_0=core.fsmonitor\n"
             "GIT_CONFIG_VALUE_0=\"touch {marker}; false\"\n")


def test_a_dotenv_cannot_make_git_status_run_code(tmp_path: Path, env: dict[str, str]) -> None:
    """core.fsmonitor through GIT_CONFIG_COUNT: the names are left out (zero-config) and
    refused (declared), so `git status` never runs the planted command."""
    project = _git_repository(tmp_path / "checkout")
    marker = tmp_path / "pwned"
    write(project / ".env", FSMONITOR.format(marker=marker) + f"API_TOKEN={CANARY}\n")
    done = keyrun(["--", "git", "status", "--short"], cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    for name in ("GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"):
        assert f"{name} is a reserved name; left out" in done.stderr

    write(project / "keyrun.toml", '[keys]\nGIT_CONFIG_COUNT = {}\nGIT_CONFIG_KEY_0 = {}\n'
          'GIT_CONFIG_VALUE_0 = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    refused = keyrun(["-e", "dev", "--", "git", "status"], cwd=project, env=env)
    assert refused.returncode == 125
    assert "GIT_CONFIG_COUNT is a reserved name" in refused.stderr
    assert not marker.exists()


@pytest.mark.parametrize("name", [
    "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_12", "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG", "GIT_SSH", "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT", "GIT_ASKPASS", "GIT_EXEC_PATH", "GIT_PROXY_COMMAND", "GIT_PAGER",
    "GIT_DIR", "GIT_TEMPLATE_DIR", "SSH_ASKPASS", "PAGER", "MANPAGER", "LESSOPEN", "LESSCLOSE",
    "EDITOR", "VISUAL", "BROWSER", "PROMPT_COMMAND", "OPENSSL_CONF", "PYTHONWARNINGS",
    "PYTHONHOME", "PYTHONBREAKPOINT", "PERL5OPT", "RUBYOPT", "GOFLAGS", "GOPROXY",
    "RUSTC_WRAPPER", "DOTNET_STARTUP_HOOKS", "JAVA_TOOL_OPTIONS", "HTTP_PROXY", "https_proxy",
    "ALL_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED", "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL", "UV_INDEX_URL", "NPM_CONFIG_REGISTRY", "npm_config_script_shell",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "SSLKEYLOGFILE", "XDG_CONFIG_HOME",
    "ZDOTDIR", "GLIBC_TUNABLES", "VAULT_ADDR", "DOPPLER_API_HOST", "KEYRUN_TRUSTED_HOSTS",
    "LD_AUDIT", "DYLD_INSERT_LIBRARIES",
])
def test_reserved(name: str) -> None:
    assert is_reserved(name)


@pytest.mark.parametrize("name", [
    "OPENAI_API_KEY", "DATABASE_URL", "GITHUB_TOKEN", "AWS_ACCESS_KEY_ID", "KUBECONFIG",
    "GOOGLE_APPLICATION_CREDENTIALS", "NPM_TOKEN", "CARGO_REGISTRY_TOKEN", "PROXY_URL",
    "VAULT_TOKEN", "DOPPLER_TOKEN",
])
def test_not_reserved(name: str) -> None:
    assert not is_reserved(name)
