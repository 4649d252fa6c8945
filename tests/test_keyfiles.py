"""Keys as files (``as = "file"``, SPEC §2) through the real command line.

Run as root, keyrun and its command run without capabilities (``setpriv``): root could
otherwise open any process's /proc/PID/fd, and the tests would not see what an ordinary
user sees (``test_the_suite_sees_what_a_user_sees`` checks that they do).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.helpers import assert_no_leak, clean_env, unavailable, write
from tests.vault_server import ROOT_TOKEN, OpenBao

PY = sys.executable
AS_USER = (["setpriv", "--bounding-set", "-all", "--inh-caps", "-all"]
           if os.geteuid() == 0 and shutil.which("setpriv") else [])
FILE_KEYS = ("GOOGLE_APPLICATION_CREDENTIALS", "TLS_KEY", "BLOB")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="in-memory files are Linux's (the refusal is tested)")

# The command: closes the descriptors it inherited, then reads each key's file itself, from a grandchild started by subprocess (which
# closes inherited descriptors), and from a grandchild that closes every descriptor it has,
# stdio too, before it reads. It prints digests, never a value.
READER = r'''
import hashlib, json, os, subprocess, sys

def digest(path):
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()

mode, names, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
if mode == "child":
    print(json.dumps({name: digest(os.environ[name]) for name in names}))
    raise SystemExit
if mode == "closer":
    os.closerange(0, 1 << 16)
    found = json.dumps({name: digest(os.environ[name]) for name in names})
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, found.encode())
    raise SystemExit
os.closerange(3, 1 << 16)  # as OpenSSH does at start
paths = {name: os.environ[name] for name in names}
holder = paths[names[0]].split("/")[2]
with open(f"/proc/{holder}/stat") as stat:
    holder_parent = int(stat.read().rpartition(")")[2].split()[1])
child = subprocess.run([sys.executable, __file__, "child", sys.argv[2], out], close_fds=True,
                       capture_output=True, text=True, check=True)
subprocess.run([sys.executable, __file__, "closer", sys.argv[2], out], close_fds=False,
               check=True)
with open(out) as file:
    closer = json.load(file)
print(json.dumps({
    "pid": os.getpid(), "paths": paths, "holder_parent": holder_parent,
    "stat": {name: [os.stat(path).st_mode & 0o7777, os.stat(path).st_uid == os.getuid()]
             for name, path in paths.items()},
    "command": {name: digest(path) for name, path in paths.items()},
    "grandchild": json.loads(child.stdout), "closer": closer, "environ": dict(os.environ),
}))
'''


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dotenv_quoted(value: str) -> str:
    """``value`` as a double-quoted .env value (python-dotenv decodes these escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class Project:
    """A project whose .env holds a service-account key (multi-line JSON), a TLS key
    without a final newline and a JSON bundle whose field holds a NUL byte."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.canary = "kr-keyfile-" + secrets.token_hex(8)
        self.env_value = "sk-env-" + secrets.token_hex(8)  # a key in the environment
        self.service_account = json.dumps({
            "type": "service_account", "project_id": "demo-project",
            "private_key_id": self.canary, "private_key": private_key_pem(),
            "client_email": "runner@demo-project.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
        }, indent=2) + "\n"
        self.tls_key = f"-----BEGIN EC {'PRIVATE'} KEY-----\n{self.canary}-tls\n-----END EC KEY-----"
        self.blob = f"{self.canary}\0after-nul\n"
        self.values = {"GOOGLE_APPLICATION_CREDENTIALS": self.service_account,
                       "TLS_KEY": self.tls_key, "BLOB": self.blob}
        write(root / "keyrun.toml", """
project = "files"
default_env = "dev"

[keys]
OPENAI_API_KEY = {}
GOOGLE_APPLICATION_CREDENTIALS = { as = "file" }
TLS_KEY = { as = "file" }
BLOB = { as = "file", name = "BUNDLE", field = "blob" }

[sources.local]
type = "dotenv"

[env.dev]
sources = ["local"]
""")
        bundle = json.dumps({"blob": self.blob})
        write(root / ".env", f"OPENAI_API_KEY={self.env_value}\n"
              f"GOOGLE_APPLICATION_CREDENTIALS={dotenv_quoted(self.service_account)}\n"
              f"TLS_KEY={dotenv_quoted(self.tls_key)}\nBUNDLE='{bundle}'\n")
        self.reader = write(tmp / "reader.py", READER)
        self.env = clean_env(tmp)

    def digests(self) -> dict[str, str]:
        return {name: sha(value.encode()) for name, value in self.values.items()}

    def run(self, args: Sequence[str], *, wrapper: Sequence[str] = (), timeout: float = 60,
            env: Mapping[str, str] | None = None) -> tuple[int, subprocess.CompletedProcess[str]]:
        """keyrun ARGS as a real process (without capabilities when root); its pid too."""
        keyrun = [PY, *wrapper] if wrapper else [PY, "-m", "keyrun"]
        process = subprocess.Popen([*AS_USER, *keyrun, *args], cwd=self.root,
                                   env=dict(env or self.env), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        out, err = process.communicate(timeout=timeout)
        return process.pid, subprocess.CompletedProcess(process.args, process.returncode, out,
                                                        err)

    def read_all(self, *keyrun_args: str, wrapper: Sequence[str] = ()
                 ) -> tuple[int, dict[str, object], subprocess.CompletedProcess[str]]:
        out = self.tmp / "closer.json"
        pid, done = self.run([*keyrun_args, "--", PY, str(self.reader), "command",
                              ",".join(FILE_KEYS), str(out)], wrapper=wrapper)
        assert done.returncode == 0, done.stderr
        return pid, json.loads(done.stdout.splitlines()[-1]), done

    def assert_clean(self, done: subprocess.CompletedProcess[str], started: float) -> None:
        """No value in keyrun's output, the access log, or any file under the project,
        HOME, the test's directory, /tmp or /dev/shm (but the .env the test wrote)."""
        log = Path(self.env["KEYRUN_ACCESS_LOG"]).read_text()
        assert_no_leak(self.canary, done.stdout, done.stderr, log, root=self.tmp)
        assert_no_leak(self.canary, root=self.root)
        for top in ("/tmp", "/dev/shm"):
            for path in recent_files(Path(top), started):
                try:
                    data = path.read_bytes()
                except OSError:  # another program's file, gone or closed to us
                    continue
                assert self.canary.encode() not in data, f"{path} holds a value"


def recent_files(top: Path, since: float) -> list[Path]:
    found = []
    for directory, _dirs, files in os.walk(top, onerror=lambda _: None):
        for name in files:
            path = Path(directory, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            if (path.is_file() and not path.is_symlink() and not name.startswith(".env")
                    and info.st_mtime >= since - 1 and info.st_size < 16 << 20):
                found.append(path)
    return found


def assert_gone(paths: Sequence[str], within: float = 3.0) -> float:
    """Every path stops opening (the holder ended); return how long that took."""
    started = time.monotonic()
    while True:
        alive = []
        for path in paths:
            try:
                with open(path, "rb"):
                    alive.append(path)
            except OSError:
                pass
        if not alive:
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"{alive} still readable"
        time.sleep(0.01)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "proj", tmp_path)


def check_report(project: Project, report: dict[str, object], masked: bool = False) -> None:
    expected = project.digests()
    assert report["command"] == expected
    assert report["grandchild"] == expected
    assert report["closer"] == expected
    paths = report["paths"]
    assert isinstance(paths, dict)
    for path in paths.values():
        holder = path.split("/")[2]
        assert path.startswith(f"/proc/{holder}/fd/"), path
    assert report["stat"] == {name: [0o400, True] for name in FILE_KEYS}
    environ = report["environ"]
    assert isinstance(environ, dict)
    assert environ["OPENAI_API_KEY"] == ("<OPENAI_API_KEY>" if masked else project.env_value)
    assert {name: environ[name] for name in FILE_KEYS} == paths


def test_exec_mode(project: Project) -> None:
    started = time.time()
    pid, report, done = project.read_all()
    check_report(project, report)
    assert report["pid"] == pid  # keyrun replaced itself with the command
    assert report["holder_parent"] != pid  # and the holder is not the command's child
    paths = report["paths"]
    assert isinstance(paths, dict)
    assert_gone(list(paths.values()))
    project.assert_clean(done, started)


def test_with_mask(project: Project) -> None:
    started = time.time()
    pid, report, done = project.read_all("--mask")
    check_report(project, report, masked=True)
    assert report["pid"] != pid  # keyrun stayed the parent
    paths = report["paths"]
    assert isinstance(paths, dict)
    assert_gone(list(paths.values()))
    project.assert_clean(done, started)
    # the file's content is masked where the command prints it
    _pid, shown = project.run(["--mask", "--", "sh", "-c",
                               'cat "$GOOGLE_APPLICATION_CREDENTIALS"; echo; cat "$TLS_KEY"'])
    assert (shown.returncode, shown.stdout) == (
        0, "<GOOGLE_APPLICATION_CREDENTIALS>\n<TLS_KEY>"), shown.stderr


def test_a_real_client_reads_the_service_account_file(project: Project) -> None:
    code = ("import google.auth; credentials, project = google.auth.default(); "
            "print(credentials.service_account_email, project, "
            "len(credentials.signer.sign(b'x')))")
    _pid, done = project.run(["--only", "GOOGLE_APPLICATION_CREDENTIALS", "--", PY, "-c", code])
    assert (done.returncode, done.stdout) == (
        0, "runner@demo-project.iam.gserviceaccount.com demo-project 256\n"), done.stderr


def test_an_ssh_key_file_is_accepted_by_ssh(project: Project, tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        unavailable("ssh-keygen is not installed (apt-get install openssh-client)")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f",
                    str(tmp_path / "id")], check=True)
    write(project.root / ".env", f"SSH_KEY={dotenv_quoted((tmp_path / 'id').read_text())}\n")
    write(project.root / "keyrun.toml", 'default_env = "dev"\n[keys]\n'
          'SSH_KEY = { as = "file" }\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    _pid, done = project.run(["--", "sh", "-c", 'ssh-keygen -y -f "$SSH_KEY"'])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == (tmp_path / "id.pub").read_text().split()[:2]


def test_without_pidfds_the_holder_watches_by_pid(project: Project) -> None:
    simulate = write(project.tmp / "simulate.py", SIMULATE)
    _pid, report, _done = project.read_all(wrapper=[str(simulate), "pidfd_open"])
    check_report(project, report)
    paths = report["paths"]
    assert isinstance(paths, dict)
    assert_gone(list(paths.values()))


# Runs keyrun as if this os module lacked the names given first (a system without them).
SIMULATE = """
import os, runpy, sys
for name in sys.argv[1].split(","):
    delattr(os, name)
sys.argv = ["keyrun", *sys.argv[2:]]
runpy.run_module("keyrun", run_name="__main__", alter_sys=True)
"""


def test_refused_where_there_are_no_in_memory_files(project: Project) -> None:
    simulate = write(project.tmp / "simulate.py", SIMULATE)
    marker = project.tmp / "ran"
    _pid, done = project.run(["--", "touch", str(marker)],
                             wrapper=[str(simulate), "memfd_create"])
    assert done.returncode == 125
    assert done.stderr == (
        "keyrun: error: GOOGLE_APPLICATION_CREDENTIALS, TLS_KEY and BLOB: to be given to the "
        'command as files (as = "file"), but this system (linux) has no in-memory files '
        "(memfd_create, a Linux call), and keyrun never writes a value to disk\n"
        '  hint: run the command on Linux (a container or a VM will do), or remove as = "file" '
        "from GOOGLE_APPLICATION_CREDENTIALS, TLS_KEY and BLOB to pass them in the environment "
        "instead\n")
    assert not marker.exists()
    # without the keys as files, the same system runs the command
    _pid, done = project.run(["--only", "OPENAI_API_KEY", "--", "touch", str(marker)],
                             wrapper=[str(simulate), "memfd_create"])
    assert done.returncode == 0, done.stderr
    assert marker.exists()


def test_a_value_no_environment_can_carry(project: Project) -> None:
    big = "x" * (300 << 10)
    write(project.root / ".env", f"BIG={big}\n", 0o600)
    write(project.root / "keyrun.toml", 'default_env = "dev"\n[keys]\nBIG = {}\n'
          '[sources.local]\ntype = "dotenv"\n[env.dev]\nsources = ["local"]\n')
    _pid, done = project.run(["--", "true"])
    assert done.returncode == 125
    assert done.stderr.endswith(
        '  hint: give it to the command as a file instead: BIG = { as = "file" } in '
        "keyrun.toml (a file holds NUL bytes and any size)\n")
    (project.root / "keyrun.toml").write_text(
        (project.root / "keyrun.toml").read_text().replace("BIG = {}", 'BIG = { as = "file" }'))
    _pid, done = project.run(["--", "sh", "-c", 'wc -c < "$BIG"'])
    assert (done.returncode, done.stdout.strip()) == (0, str(300 << 10)), done.stderr


def test_set_a_file_key_to_what_no_environment_can_carry(project: Project) -> None:
    write(project.root / "keyrun.toml", 'default_env = "dev"\n[keys]\nF = { as = "file" }\n'
          'E = {}\n[sources.local]\ntype = "dotenv"\n[env.dev]\nsources = ["local"]\n')
    value = f"{project.canary}\nsecond line\0after NUL"
    done = subprocess.run([*AS_USER, PY, "-m", "keyrun", "set", "F"], cwd=project.root,
                          env=project.env, input=value.encode(), capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    _pid, read = project.run(["--only", "F", "--", "sh", "-c", 'sha256sum < "$F"'])
    assert (read.returncode, read.stdout.split()[0]) == (0, sha(value.encode())), read.stderr
    done = subprocess.run([*AS_USER, PY, "-m", "keyrun", "set", "E"], cwd=project.root,
                          env=project.env, input=value.encode(), capture_output=True,
                          check=False)
    assert done.returncode == 125
    assert done.stderr.decode().endswith(
        'give it to the command as a file instead: E = { as = "file" } in keyrun.toml '
        "(a file holds NUL bytes and any size)\n")


def test_python_api(project: Project) -> None:
    code = """
import hashlib, json, os, subprocess, sys, keyrun
values = keyrun.load()
names = keyrun.inject()
path = os.environ["TLS_KEY"]
child = subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True)
print(json.dumps({"load": hashlib.sha256(values["TLS_KEY"].encode()).hexdigest(),
                  "path": path, "names": sorted(names),
                  "child": child.stdout.split()[0]}))
"""
    _pid, done = project.run([], wrapper=["-c", code])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["load"] == found["child"] == sha(project.tls_key.encode())
    assert found["path"].startswith("/proc/")
    assert found["names"] == ["BLOB", "GOOGLE_APPLICATION_CREDENTIALS", "OPENAI_API_KEY",
                              "TLS_KEY"]
    assert_gone([found["path"]])


def test_list_and_doctor_say_as_file(project: Project) -> None:
    _pid, listed = project.run(["list", "--json"])
    rows = {row["name"]: row["as"] for row in json.loads(listed.stdout)["keys"]}
    assert rows == {"OPENAI_API_KEY": "env", "GOOGLE_APPLICATION_CREDENTIALS": "file",
                    "TLS_KEY": "file", "BLOB": "file"}
    _pid, table = project.run(["list"])
    names = [line.split()[0:3] for line in table.stdout.splitlines()[2:6]]
    assert names == [["OPENAI_API_KEY", "local", ".env#OPENAI_API_KEY"],
                     ["GOOGLE_APPLICATION_CREDENTIALS", "(as", "file)"],
                     ["TLS_KEY", "(as", "file)"], ["BLOB", "(as", "file)"]]
    _pid, doctor = project.run(["doctor", "--json"])
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["config"]["status"] == "pass"
    assert checks["config"]["message"].endswith(
        "4 keys (GOOGLE_APPLICATION_CREDENTIALS, TLS_KEY, BLOB as files)")
    # BLOB's NUL byte is no problem in a file
    assert (checks["missing-keys"]["status"], checks["missing-keys"]["message"]) == (
        "pass", "all 4 required keys resolve")
    assert project.canary not in listed.stdout + table.stdout + doctor.stdout


@pytest.mark.parametrize(("written", "error"), [
    ('{ as = "disk" }',
     ': [keys] TLS_KEY as: must be "env" or "file", not "disk"\n'
     '  hint: write TLS_KEY = { as = "file" } to give the command a path to an in-memory '
     "file holding the value, or leave `as` out for the value itself in the variable\n"),
    ("{ as = true }", ": [keys] TLS_KEY as: must be a string, not a boolean\n"),
])
def test_as_is_validated(project: Project, written: str, error: str) -> None:
    config = project.root / "keyrun.toml"
    text = config.read_text().replace('TLS_KEY = { as = "file" }', f"TLS_KEY = {written}")
    config.write_text(text)
    line = text.splitlines().index(f"TLS_KEY = {written}") + 1
    _pid, done = project.run(["list"])
    assert done.returncode == 125
    assert done.stderr.startswith(f"keyrun: error: {config}:{line}{error}")


def test_as_in_an_environment_keys_table(project: Project) -> None:
    config = project.root / "keyrun.toml"
    config.write_text(config.read_text().replace('TLS_KEY = { as = "file" }', "TLS_KEY = {}")
                      + '\n[env.dev.keys]\nTLS_KEY = { as = "file" }\n')
    _pid, report, _done = project.read_all()
    check_report(project, report)
    config.write_text(config.read_text() + '\n[env.other]\nextends = "dev"\n'
                      '[env.other.keys]\nTLS_KEY = { as = "env" }\n')
    _pid, done = project.run(["-e", "other", "--only", "TLS_KEY", "--", "sh", "-c",
                              'test "$TLS_KEY" = "$(printf %s "$EXPECTED")" && echo same'],
                             env={**project.env, "EXPECTED": project.tls_key})
    assert (done.returncode, done.stdout) == (0, "same\n"), done.stderr


@pytest.mark.skipif(not AS_USER and os.geteuid() == 0, reason="needs setpriv to drop root")
def test_the_suite_sees_what_a_user_sees(tmp_path: Path) -> None:
    """Under AS_USER the kernel's rule holds: another process's fd directory opens only
    while that process is dumpable (why keyrun's holder is a fresh program, not a fork)."""
    code = """
import ctypes, os, subprocess, sys, time
fd = os.memfd_create("probe")
os.write(fd, b"ok")
for dumpable in (1, 0):
    pid = os.fork()
    if pid == 0:
        ctypes.CDLL(None).prctl(4, dumpable, 0, 0, 0)
        time.sleep(5)
        os._exit(0)
    time.sleep(0.2)
    done = subprocess.run(["cat", f"/proc/{pid}/fd/{fd}"], capture_output=True)
    print(dumpable, done.returncode)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""
    done = subprocess.run([*AS_USER, PY, "-c", code], capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout == "1 0\n0 1\n"


# Leases: keyrun stays the parent (no --mask) to revoke a PKI certificate when the command ends.
CERTIFICATE_CHECK = r'''
import os, subprocess, sys
from cryptography import x509
from cryptography.hazmat.primitives import serialization

with open(os.environ["TLS_CERT"], "rb") as file:
    certificate = x509.load_pem_x509_certificate(file.read())
reader = "import os, sys; sys.stdout.buffer.write(open(os.environ['TLS_KEY'], 'rb').read())"
pem = subprocess.run([sys.executable, "-c", reader], capture_output=True, check=True).stdout
key = serialization.load_pem_private_key(pem, None)
public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
print(key.public_key().public_bytes(*public) == certificate.public_key().public_bytes(*public),
      os.environ["TLS_KEY"])
'''


def test_with_leases_keyrun_stays_the_parent(openbao: OpenBao, project: Project) -> None:
    client = openbao.client()
    if "pki/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "24h"})
        client.secrets.pki.generate_root("internal", "keyrun test CA", mount_point="pki")
    client.secrets.pki.create_or_update_role("files", {
        "allow_any_name": True, "generate_lease": True, "max_ttl": "2h"}, mount_point="pki")
    write(project.root / "keyrun.toml", f"""
default_env = "dev"
[keys]
TLS_CERT = {{ name = "files", field = "certificate", as = "file" }}
TLS_KEY = {{ name = "files", field = "private_key", as = "file" }}
TLS_SERIAL = {{ name = "files", field = "serial_number" }}
[sources.vault]
type = "vault"
url = "{openbao.url}"
mount = "pki"
path = "issue/{{key}}"
params = {{ common_name = "files.example.com", ttl = "1h" }}
[env.dev]
sources = ["vault"]
""")
    check = write(project.tmp / "check.py", CERTIFICATE_CHECK)
    env = {**project.env, "VAULT_TOKEN": ROOT_TOKEN}
    code = ("import os, subprocess, sys; print(os.environ['TLS_SERIAL'], os.getppid()); "
            f"sys.stdout.flush(); subprocess.run([sys.executable, {str(check)!r}], check=True)")
    pid, done = project.run(["--", PY, "-c", code], env=env)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    serial, parent = first.split()
    assert int(parent) == pid  # keyrun stayed the command's parent
    matches, path = second.split()
    assert matches == "True"
    assert path.startswith("/proc/")
    assert_gone([path])
    assert client.read(f"pki/cert/{serial}")["data"]["revocation_time"] > 0
