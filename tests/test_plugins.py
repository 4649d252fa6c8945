"""A third-party source, installed the way pip installs one (an entry point in a
dist-info), driven through the real CLI: discovery, leases kept and revoked around the
command, token stripping."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keyrun.installer import add_package_command
from tests.helpers import clean_env, keyrun, write, write_project

# The plugin's extra, installed the way keyrun itself was (pip here, uv in .ci/lowest).
PLUGIN_SDK = add_package_command("keyrun-test-plugin[sdk]")

PLUGIN = '''
from pathlib import Path
from keyrun.secret import Secret
from keyrun.sources import Item, Lease, Option, Problem, Source


class LeasingSource(Source):
    """Hands out a credential per key, recorded in a ledger file until released."""

    type_name = "leasing"
    options = (Option("ledger", "file that records live leases", required=True),)

    def token_env_vars(self):
        return ("LEASING_TOKEN",)

    def fetch(self, requests, deadline):
        ledger = Path(self.settings["ledger"])
        results = {}
        for request in requests:
            if request.name == "ABSENT":
                results[request.key] = Problem.missing("no such credential")
                continue
            with ledger.open("a") as handle:
                handle.write(f"lease {request.name}\\n")
            results[request.key] = Item(Secret("cred-" + request.name.lower()),
                                        lease=Lease("lease/" + request.name, ttl=60, renewable=True))
        return results

    def renew_leases(self):
        with Path(self.settings["ledger"]).open("a") as handle:
            handle.write("renew\\n")
        return None

    def release(self):
        with Path(self.settings["ledger"]).open("a") as handle:
            handle.write("revoke\\n")
        return ["leases revoked (test)"]


class SlowLeasingSource(LeasingSource):
    """Leases at once, then takes 5 s to answer."""

    type_name = "slow-leasing"

    def fetch(self, requests, deadline):
        import time
        with Path(self.settings["ledger"]).open("a") as handle:
            handle.write("lease\\n")
        time.sleep(5)
        return {}


class BuggySource(Source):
    """Fails with an exception whose text quotes a value, as int("<value>") would."""

    type_name = "buggy"

    def fetch(self, requests, deadline):
        int("kr-canary-" + "5e1f0c2a9d7b4386")


class NeedsSdkSource(Source):
    """Imports its SDK, which the distribution's "sdk" extra would install, when it fetches."""

    type_name = "needs-sdk"
    extra = "sdk"

    def fetch(self, requests, deadline):
        from keyrun.sources import import_sdk
        import_sdk("keyrun_no_such_sdk", self)


class DeclaresSdkSource(Source):
    """Names the modules it needs, and no extra."""

    type_name = "declares-sdk"
    requires = ("keyrun_no_such_sdk", "json")

    def fetch(self, requests, deadline):
        return {}


class SlowSource(Source):
    """A remote source that takes 0.6 s to answer."""

    type_name = "slow"

    def fetch(self, requests, deadline):
        import time
        time.sleep(0.6)
        return {r.key: Item(Secret("slow-value")) for r in requests}
'''


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    write(site / "keyrun_test_plugin.py", PLUGIN)
    write(site / "keyrun_test_broken.py", "import keyrun_no_such_sdk\n")
    write(site / "keyrun_test_plugin-1.0.dist-info" / "METADATA",
          "Metadata-Version: 2.1\nName: keyrun-test-plugin\nVersion: 1.0\n"
          "Provides-Extra: sdk\nRequires-Dist: keyrun-no-such-sdk>=1; extra == \"sdk\"\n"
          "Requires-Dist: keyrun>=0.1\n")
    write(site / "keyrun_test_plugin-1.0.dist-info" / "entry_points.txt",
          "[keyrun.sources]\nleasing = keyrun_test_plugin:LeasingSource\n"
          "slow = keyrun_test_plugin:SlowSource\n"
          "buggy = keyrun_test_plugin:BuggySource\n"
          "slow-leasing = keyrun_test_plugin:SlowLeasingSource\n"
          "needs-sdk = keyrun_test_plugin:NeedsSdkSource\n"
          "declares-sdk = keyrun_test_plugin:DeclaresSdkSource\n"
          "broken = keyrun_test_broken:BrokenSource\n")
    return clean_env(tmp_path, PYTHONPATH=str(site), LEASING_TOKEN="tok-123")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", textwrap.dedent(f"""
        [keys]
        DB_USER = {{}}
        [sources.dyn]
        type = "leasing"
        ledger = "{tmp_path / 'ledger'}"
        [env.dev]
        sources = ["dyn"]
    """))


def ledger(tmp_path: Path) -> list[str]:
    return (tmp_path / "ledger").read_text().splitlines()


def test_entry_point_source_with_lease_is_supervised(project: Path, plugin_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    code = ("import os, sys; print(os.environ['DB_USER'], 'LEASING_TOKEN' in os.environ); "
            "print(open(sys.argv[1]).read().split(), flush=True); sys.exit(3)")
    done = keyrun(["--", sys.executable, "-c", code, str(tmp_path / "ledger")], cwd=project,
                  env=plugin_env)
    assert done.returncode == 3, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "cred-db_user False"
    assert second == "['lease', 'DB_USER']"  # revoked only after the command ended
    assert ledger(tmp_path) == ["lease DB_USER", "revoke"]
    assert "keyrun: warning: dyn: leases revoked (test)" in done.stderr


def test_pass_env_lets_the_token_through(project: Path, plugin_env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    config.write_text(config.read_text().replace('sources = ["dyn"]',
                                                 'sources = ["dyn"]\npass_env = ["LEASING_TOKEN"]'))
    done = keyrun(["--", sys.executable, "-c", "import os; print(os.environ['LEASING_TOKEN'])"],
                  cwd=project, env=plugin_env)
    assert done.stdout == "tok-123\n"


def test_failure_after_leasing_still_revokes(project: Path, plugin_env: dict[str, str],
                                             tmp_path: Path) -> None:
    config = project / "keyrun.toml"
    config.write_text(config.read_text().replace("DB_USER = {}", "DB_USER = {}\nABSENT = {}"))
    done = keyrun(["--", "true"], cwd=project, env=plugin_env)
    assert done.returncode == 125
    assert ledger(tmp_path) == ["lease DB_USER", "revoke"]


def test_command_not_found_after_leasing_revokes(project: Path, plugin_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    done = keyrun(["--", "no-such-command-keyrun"], cwd=project, env=plugin_env)
    assert done.returncode == 127
    assert ledger(tmp_path) == ["lease DB_USER", "revoke"]


def test_sigterm_to_keyrun_reaches_the_command_and_revokes(project: Path,
                                                          plugin_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "keyrun", "--", "sh", "-c", "echo ready; sleep 30"],
        cwd=project, env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == -signal.SIGTERM
    assert ledger(tmp_path) == ["lease DB_USER", "revoke"]


def test_list_releases_what_it_leased(project: Path, plugin_env: dict[str, str],
                                      tmp_path: Path) -> None:
    done = keyrun(["list", "--json"], cwd=project, env=plugin_env)
    assert json.loads(done.stdout)["keys"][0]["status"] == "ok"
    assert ledger(tmp_path) == ["lease DB_USER", "revoke"]


def test_spinner_only_on_a_terminal(project: Path, plugin_env: dict[str, str]) -> None:
    import os
    import pty
    import select

    config = project / "keyrun.toml"
    config.write_text(config.read_text().replace('type = "leasing"', 'type = "slow"')
                      .replace('ledger = ', '# ledger = '))
    piped = keyrun(["--", "true"], cwd=project, env=plugin_env)
    assert piped.returncode == 0
    assert piped.stderr == ""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(project)
        os.execve(sys.executable, [sys.executable, "-m", "keyrun", "--", "true"], plugin_env)
    output = b""
    while True:
        try:
            if select.select([fd], [], [], 10)[0]:
                chunk = os.read(fd, 1024)
                if not chunk:
                    break
                output += chunk
        except OSError:
            break
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "fetching proj/dev from dyn…" in output.decode()
    assert output.endswith(b"\r\x1b[K")


def test_sigterm_during_the_fetch_revokes_then_dies_of_it(project: Path,
                                                          plugin_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    import time

    config = project / "keyrun.toml"
    config.write_text(config.read_text().replace('type = "leasing"', 'type = "slow-leasing"'))
    process = subprocess.Popen([sys.executable, "-m", "keyrun", "--", "true"], cwd=project,
                               env=plugin_env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not (tmp_path / "ledger").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == -signal.SIGTERM
    assert ledger(tmp_path) == ["lease", "revoke"]


def test_an_unexpected_exception_never_prints_its_text(project: Path, plugin_env: dict[str, str]
                                                       ) -> None:
    from tests.helpers import CANARY

    config = project / "keyrun.toml"
    config.write_text(config.read_text().replace('type = "leasing"', 'type = "buggy"')
                      .replace("ledger = ", "# ledger = "))
    for args in (["--", "true"], ["list"], ["doctor"]):
        done = keyrun(args, cwd=project, env=plugin_env)
        assert "unexpected ValueError" in done.stdout + done.stderr, args
        assert CANARY not in done.stdout + done.stderr, args
    debug = keyrun(["--", "true"], cwd=project, env=dict(plugin_env, KEYRUN_DEBUG="1"))
    assert CANARY in debug.stderr  # only when the user asks for the traceback


def test_usability_of_third_party_sources(plugin_env: dict[str, str], tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json
        from keyrun.sources.registry import installed_types, source_class, unusable_reason
        types = {t.name: t for t in installed_types()}
        print(json.dumps({name: unusable_reason(types[name], source_class(name, where="x"))
                          for name in ("leasing", "needs-sdk", "declares-sdk")}))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=plugin_env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert json.loads(done.stdout) == {
        "leasing": None,
        "needs-sdk": f"{PLUGIN_SDK} (missing keyrun-no-such-sdk)",
        "declares-sdk": "missing keyrun_no_such_sdk: install the packages that provide them",
    }, done.stderr


def test_missing_sdk_of_a_third_party_source_names_its_own_extra(
        project: Path, plugin_env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    config.write_text(config.read_text().replace('type = "leasing"', 'type = "needs-sdk"')
                      .replace("ledger = ", "# ledger = "))
    done = keyrun(["--", "true"], cwd=project, env=plugin_env)
    assert done.returncode == 125
    assert ("DB_USER: dyn: source type 'needs-sdk' needs the Python package "
            f"'keyrun_no_such_sdk', which is not installed — install it with: {PLUGIN_SDK}"
            ) in done.stderr
    assert "keyrun[sdk]" not in done.stderr


def test_a_source_module_that_imports_a_missing_sdk(project: Path,
                                                     plugin_env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    config.write_text(config.read_text().replace('type = "leasing"', 'type = "broken"')
                      .replace("ledger = ", "# ledger = "))
    done = keyrun(["--", "true"], cwd=project, env=plugin_env)
    assert done.returncode == 125
    assert done.stderr.splitlines() == [
        f"keyrun: error: {config}:4: [sources.dyn]: source type 'broken' needs the Python module "
        "'keyrun_no_such_sdk', which is not installed",
        f"  hint: install it with: {PLUGIN_SDK}"]
