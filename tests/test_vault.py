"""The vault source against a real OpenBao server: the contract suite, KV v1/v2, versions,
metadata, every way of getting a token, namespaces, TLS, retries and every error mode.

Dynamic secrets and their leases are in test_vault_leases.py."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Context, Deadline, Item, Meta, Problem, Request, check_settings
from keyrun.sources.vault import VaultSource
from keyrun.testing import Harness, SourceContract
from tests.helpers import (
    CANARY,
    as_problem,
    assert_no_leak,
    build_source,
    clean_env,
    free_port,
    keyrun,
    unavailable,
    value,
    write,
    write_project,
)
from tests.helpers import fetch as fetch_within
from tests.vault_server import (
    ROOT_TOKEN,
    MutualTlsOpenBao,
    OpenBao,
)

VARIABLES = ("VAULT_", "BAO_")


@pytest.fixture(autouse=True)
def _scrubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """hvac and keyrun read VAULT_* and ~/.vault-token: none of the developer's."""
    for name in list(os.environ):
        if name.startswith(VARIABLES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))


def unique(prefix: str = "app") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make(server: OpenBao, root: Path, environ: dict[str, str] | None = None,
         project: str = "proj", env: str = "dev", interactive: bool = False,
         **settings: Any) -> VaultSource:
    settings.setdefault("url", server.url)
    environ = {"VAULT_TOKEN": ROOT_TOKEN, "HOME": str(root / "home")} if environ is None \
        else environ
    return build_source(VaultSource, "vault", settings, project=project, env=env, root=root,
                        environ=environ, interactive=interactive)


fetch = functools.partial(fetch_within, seconds=20)  # OpenBao on a loaded machine


@pytest.fixture(scope="module")
def kv(openbao: OpenBao) -> Any:
    """The root client, with a KV v1 mount at kv1/ besides the dev server's KV v2 secret/."""
    client = openbao.client()
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    if "kv1/" not in mounts:
        client.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    return client


# the contract suite, on a KV v2 bundle and on KV v1 entries per key


class BundleHarness(Harness):
    max_value_size = 512 * 1024

    def __init__(self, server: OpenBao, client: Any, root: Path) -> None:
        self.server, self.client, self.root = server, client, root
        self.path = unique("bundle")
        self.data: dict[str, str] = {}

    def put(self, name: str, value: str) -> None:
        self.data[name] = value
        self.client.secrets.kv.v2.create_or_update_secret(self.path, secret=self.data,
                                                          mount_point="secret")

    def source(self) -> VaultSource:
        return make(self.server, self.root, path=self.path)

    def broken_source(self) -> VaultSource:
        return make(self.server, self.root, url=f"http://127.0.0.1:{free_port()}",
                    path=self.path)


class PerKeyV1Harness(BundleHarness):
    def put(self, name: str, value: str) -> None:
        self.client.secrets.kv.v1.create_or_update_secret(f"{self.path}/{name}",
                                                          {"value": value}, mount_point="kv1")

    def source(self) -> VaultSource:
        return make(self.server, self.root, mount="kv1", path=self.path + "/{key}")

    def broken_source(self) -> VaultSource:
        environ = {"VAULT_TOKEN": "s.not-a-token", "HOME": str(self.root)}
        return make(self.server, self.root, environ, mount="kv1", path=self.path + "/{key}")


class TestKv2Bundle(SourceContract):
    @pytest.fixture
    def harness(self, openbao: OpenBao, kv: Any, tmp_path: Path) -> Harness:
        return BundleHarness(openbao, kv, tmp_path)


class TestKv1PerKey(SourceContract):
    @pytest.fixture
    def harness(self, openbao: OpenBao, kv: Any, tmp_path: Path) -> Harness:
        return PerKeyV1Harness(openbao, kv, tmp_path)


# KV v1 and v2: detection, paths, bundles, fields, versions


def test_kv_version_is_detected_and_data_prefix_accepted(openbao: OpenBao, kv: Any,
                                                          tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "v2-value-aaa"},
                                             mount_point="secret")
    kv.secrets.kv.v1.create_or_update_secret(path, {"A": "v1-value-bbb"}, mount_point="kv1")
    request = Request("A", "A")
    for settings in ({"mount": "secret", "path": path},
                     {"mount": "secret", "path": f"data/{path}"},
                     {"mount": "", "path": f"secret/data/{path}"},
                     {"mount": "", "path": f"secret/{path}"}):
        assert value(fetch(make(openbao, tmp_path, **settings), request)["A"]) == "v2-value-aaa"
    v1 = make(openbao, tmp_path, mount="kv1", path=path)
    assert value(fetch(v1, request)["A"]) == "v1-value-bbb"
    assert v1._mounts[0] == ("kv1/", "kv", 1)


def test_bundle_fields_are_keys_and_field_picks_inside_json(openbao: OpenBao, kv: Any,
                                                            tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={
        "OPENAI_API_KEY": "sk-bundle-0001", "db-url": "postgres://u@h/db",
        "NESTED": {"api_key": "nested-0002"}, "JSON_TEXT": '{"token": "json-0003"}',
        "NUMBER": 42}, mount_point="secret")
    source = make(openbao, tmp_path, path="{project}-" + path.split("-", 1)[1], project="app")
    got = fetch(source, Request("OPENAI_API_KEY", "OPENAI_API_KEY"),
                Request("DATABASE_URL", "db-url"), Request("NESTED_KEY", "NESTED", "api_key"),
                Request("TOKEN", "JSON_TEXT", "token"), Request("NUMBER", "NUMBER"),
                Request("ABSENT", "ABSENT"))
    assert value(got["OPENAI_API_KEY"]) == "sk-bundle-0001"
    assert value(got["DATABASE_URL"]) == "postgres://u@h/db"
    assert value(got["NESTED_KEY"]) == "nested-0002"
    assert value(got["TOKEN"]) == "json-0003"
    assert value(got["NUMBER"]) == "42"
    assert as_problem(got["ABSENT"]) == Problem("missing", f"no field 'ABSENT' in secret/{path}")
    item = got["OPENAI_API_KEY"]
    assert isinstance(item, Item)
    assert item.version == "1"
    assert item.updated is not None
    assert (datetime.now(UTC) - item.updated).total_seconds() < 60
    assert source.locate(Request("DATABASE_URL", "db-url")) == f"secret/{path}#db-url"


def test_per_key_field_rules(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    base = unique()
    for name, data in (("ONLY", {"api_key": "only-field-01"}),
                       ("VALUE", {"value": "value-field-02", "note": "x"}),
                       ("MANY", {"a": "1", "b": "2"})):
        kv.secrets.kv.v2.create_or_update_secret(f"{base}/{name}", secret=data,
                                                 mount_point="secret")
    source = make(openbao, tmp_path, path=base + "/{key}")
    got = fetch(source, Request("ONLY", "ONLY"), Request("VALUE", "VALUE"),
                Request("MANY", "MANY"), Request("PICKED", "MANY", "b"),
                Request("NOFIELD", "MANY", "c"), Request("GONE", "GONE"))
    assert value(got["ONLY"]) == "only-field-01"
    assert value(got["VALUE"]) == "value-field-02"
    assert value(got["PICKED"]) == "2"
    assert as_problem(got["MANY"]) == Problem(
        "error", f"secret/{base}/MANY holds several fields (a, b); name one with "
                 "field = \"…\" on the key")
    assert as_problem(got["NOFIELD"]) == Problem(
        "missing", f"no field 'c' in secret/{base}/MANY (fields: a, b)")
    assert as_problem(got["GONE"]) == Problem("missing", f"no entry secret/{base}/GONE")
    configured = make(openbao, tmp_path, path=base + "/{key}", field="note")
    assert value(fetch(configured, Request("VALUE", "VALUE"))["VALUE"]) == "x"
    assert source.locate(Request("PICKED", "MANY", "b", "3")) == f"secret/{base}/MANY@3#b"


def test_versions_pinned_deleted_and_destroyed(openbao: OpenBao, kv: Any,
                                               tmp_path: Path) -> None:
    path = unique()
    for n in range(1, 5):
        kv.secrets.kv.v2.create_or_update_secret(path, secret={"K": f"version-{n}"},
                                                 mount_point="secret")
    kv.secrets.kv.v2.delete_secret_versions(path, [2], mount_point="secret")
    kv.secrets.kv.v2.destroy_secret_versions(path, [3], mount_point="secret")
    source = make(openbao, tmp_path, path=path)
    got = fetch(source, Request("LATEST", "K"), Request("ONE", "K", version="1"),
                Request("TWO", "K", version="2"), Request("THREE", "K", version="3"),
                Request("NINE", "K", version="9"), Request("BAD", "K", version="x"))
    assert value(got["LATEST"]) == "version-4"
    assert isinstance(got["LATEST"], Item)
    assert got["LATEST"].version == "4"
    assert value(got["ONE"]) == "version-1"
    assert isinstance(got["ONE"], Item)
    assert got["ONE"].version == "1"
    assert as_problem(got["TWO"]).message == (
        f"version 2 of secret/{path} was deleted (restore it with: vault kv undelete "
        f"-versions=2 secret/{path})")
    assert as_problem(got["THREE"]).message == f"version 3 of secret/{path} was destroyed"
    assert as_problem(got["NINE"]) == Problem("missing", f"no version 9 of secret/{path}")
    assert as_problem(got["BAD"]).kind == "error"
    kv.secrets.kv.v2.delete_latest_version_of_secret(path, mount_point="secret")
    latest = as_problem(fetch(source, Request("LATEST", "K"))["LATEST"])
    assert latest.kind == "missing"
    assert latest.message.startswith("version 4 of ")
    assert "was deleted" in latest.message


def test_version_pin_on_kv1_is_an_error(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v1.create_or_update_secret(path, {"K": "v"}, mount_point="kv1")
    source = make(openbao, tmp_path, mount="kv1", path=path)
    assert as_problem(fetch(source, Request("K", "K", version="1"))["K"]) == Problem(
        "error", f"kv1/{path} pins version 1, but kv1/ is not KV v2 (only KV v2 keeps "
                 "versions)")


def test_metadata_for_list_and_rotation(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"K": "a"}, mount_point="secret")
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"K": "b"}, mount_point="secret")
    kv.secrets.kv.v2.update_metadata(path, custom_metadata={"owner": "team-a"},
                                     delete_version_after="1h", mount_point="secret")
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"K": "c"}, mount_point="secret")
    gone = unique()
    kv.secrets.kv.v2.create_or_update_secret(gone, secret={"K": "x"}, mount_point="secret")
    kv.secrets.kv.v2.delete_latest_version_of_secret(gone, mount_point="secret")
    per_key = make(openbao, tmp_path, path="{key}", field="K")
    metas = per_key.describe([Request("CURRENT", path), Request("FIRST", path, version="1"),
                              Request("GONE", gone), Request("NONE", unique())], Deadline(20))
    current = metas["CURRENT"]
    assert current.exists is True
    assert current.version == "3"
    assert current.note == "custom metadata: owner=team-a"
    assert current.updated is not None
    assert current.expires is not None  # delete_version_after
    assert 3500 < (current.expires - datetime.now(UTC)).total_seconds() <= 3600
    assert metas["FIRST"].version == "1"
    assert metas["FIRST"].exists is True
    assert metas["GONE"].exists is False
    assert metas["GONE"].deleted is not None
    assert metas["NONE"] == Meta(exists=False)
    item = fetch(per_key, Request("CURRENT", path))["CURRENT"]
    assert isinstance(item, Item)
    assert item.expires is not None
    bundle = make(openbao, tmp_path, path=path)
    assert bundle.describe([Request("K", "K")], Deadline(20))["K"].exists is None
    v1 = make(openbao, tmp_path, mount="kv1", path=path)
    assert v1.describe([Request("K", "K")], Deadline(20))["K"] == Meta(
        note="KV v1 records no versions or change times")


def test_names_of_a_bundle(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"B": "1", "A": "2"},
                                             mount_point="secret")
    assert make(openbao, tmp_path, path=path).names(Deadline(20)) == ["A", "B"]
    assert make(openbao, tmp_path, path=path + "/{key}").names(Deadline(20)) is None


# writing


def test_write_kv2_keeps_other_fields_with_check_and_set(openbao: OpenBao, kv: Any,
                                                         tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"OTHER": "keep-me"},
                                             mount_point="secret")
    source = make(openbao, tmp_path, path=path)
    where = source.write(Request("NEW", "NEW"), Secret("written-0001"), Deadline(20))
    assert where == f"secret/{path}#NEW (version 2)"
    stored = kv.secrets.kv.v2.read_secret_version(path, mount_point="secret",
                                                  raise_on_deleted_version=True)["data"]
    assert stored["data"] == {"OTHER": "keep-me", "NEW": "written-0001"}
    fresh = unique()
    assert make(openbao, tmp_path, path=fresh).write(
        Request("A", "A"), Secret("first"), Deadline(20)) == f"secret/{fresh}#A (version 1)"


def test_write_refuses_a_concurrent_change(openbao: OpenBao, kv: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "one"}, mount_point="secret")
    source = make(openbao, tmp_path, path=path)
    read = VaultSource._current

    def racing(self: VaultSource, *args: Any) -> tuple[dict[str, Any], int]:
        current = read(self, *args)  # someone else writes between keyrun's read and write
        kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "theirs"},
                                                 mount_point="secret")
        return current

    monkeypatch.setattr(VaultSource, "_current", racing)
    with pytest.raises(SourceError) as failure:
        source.write(Request("A", "A"), Secret("mine-0001"), Deadline(20))
    assert failure.value.message == (
        f"vault: secret/{path} changed while keyrun set was writing it (it is no longer "
        "version 1); nothing was written")
    stored = kv.secrets.kv.v2.read_secret_version(path, mount_point="secret",
                                                  raise_on_deleted_version=True)["data"]
    assert stored["data"] == {"A": "theirs"}


def test_write_kv1_and_per_key(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v1.create_or_update_secret(path, {"OTHER": "keep"}, mount_point="kv1")
    assert make(openbao, tmp_path, mount="kv1", path=path).write(
        Request("A", "A"), Secret("v1-written"), Deadline(20)) == f"kv1/{path}#A"
    assert kv.secrets.kv.v1.read_secret(path, mount_point="kv1")["data"] == {
        "OTHER": "keep", "A": "v1-written"}
    per_key = make(openbao, tmp_path, path=path + "/{key}")
    per_key.write(Request("B", "B"), Secret("per-key-value"), Deadline(20))
    per_key.write(Request("C", "C", field="token"), Secret("field-value"), Deadline(20))
    kv.secrets.kv.v2.create_or_update_secret(f"{path}/D", secret={"api_key": "old"},
                                             mount_point="secret")
    per_key.write(Request("D", "D"), Secret("new-only-field"), Deadline(20))  # its only field
    assert value(fetch(per_key, Request("D", "D"))["D"]) == "new-only-field"
    read = kv.secrets.kv.v2.read_secret_version
    assert read(f"{path}/B", mount_point="secret", raise_on_deleted_version=True)[
        "data"]["data"] == {"value": "per-key-value"}
    assert read(f"{path}/C", mount_point="secret", raise_on_deleted_version=True)[
        "data"]["data"] == {"token": "field-value"}


def test_write_to_a_dynamic_engine_is_refused(openbao: OpenBao, kv: Any,
                                              tmp_path: Path) -> None:
    client = openbao.client()
    if "transit/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("transit", path="transit")
    source = make(openbao, tmp_path, mount="transit", path="keys/{key}")
    with pytest.raises(SourceError) as failure:
        source.write(Request("A", "A"), Secret("x"), Deadline(20))
    assert failure.value.message == ("vault: transit/ is a transit secrets engine, not KV: "
                                     "keyrun set writes KV entries only")


# tokens: where they come from, in order


def test_token_order_env_then_helper_then_file(openbao: OpenBao, kv: Any,
                                               tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "ordered"},
                                             mount_point="secret")
    home = tmp_path / "home"
    helper_token = kv.auth.token.create(policies=["root"], ttl="10m")["auth"]["client_token"]
    file_token = kv.auth.token.create(policies=["root"], ttl="10m")["auth"]["client_token"]
    write(home / ".vault-token", file_token + "\n")
    helper = write(tmp_path / "helper.sh", "#!/bin/sh\n[ \"$1\" = get ] && "
                   f"echo {helper_token}\n", 0o700)
    environ = {"HOME": str(home)}

    def origin(env: dict[str, str]) -> str:
        source = make(openbao, tmp_path, env, path=path)
        assert value(fetch(source, Request("A", "A"))["A"]) == "ordered"
        detail = source.check(Deadline(20)).detail
        for token in (helper_token, file_token, ROOT_TOKEN + "@"):
            assert token not in detail
        return detail.split("token from ", 1)[1].split(";")[0]

    assert origin(environ) == "~/.vault-token"
    write(home / ".vault", f'token_helper = "{helper}"\n')
    assert origin(environ) == f"the token helper {helper}"
    assert origin(dict(environ, VAULT_TOKEN=ROOT_TOKEN)) == "VAULT_TOKEN"
    assert origin(dict(environ, BAO_TOKEN=ROOT_TOKEN)) == "BAO_TOKEN"
    config = write(tmp_path / "alt.hcl", 'token_helper = "/bin/false"\n')
    with pytest.raises(SourceError) as failure:
        fetch(make(openbao, tmp_path, dict(environ, VAULT_CONFIG_PATH=str(config)), path=path),
              Request("A", "A"))
    assert failure.value.message == (f"vault: the token helper /bin/false (from {config}) "
                                     "failed with status 1")


def test_no_token_anywhere(openbao: OpenBao, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as failure:
        fetch(make(openbao, tmp_path, {"HOME": str(tmp_path)}), Request("A", "A"))
    assert failure.value.message.startswith(f"vault: no Vault token for {openbao.url}: ")
    assert failure.value.hint is not None
    assert "vault login" in failure.value.hint


def test_keyrun_never_writes_a_token_file(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    approle = _approle(openbao, kv)
    home = tmp_path / "home"
    environ = {"HOME": str(home), "ROLE_ID": approle[0], "SECRET_ID": approle[1]}
    source = make(openbao, tmp_path, environ, path=unique(), auth={
        "method": "approle", "role_id_env": "ROLE_ID", "secret_id_env": "SECRET_ID"})
    fetch(source, Request("A", "A"))
    assert not (home / ".vault-token").exists()


def _policy(client: Any, name: str, text: str) -> str:
    client.sys.create_or_update_policy(name=name, policy=text)
    return name


def _approle(server: OpenBao, client: Any, role: str = "keyrun-app") -> tuple[str, str]:
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
    _policy(client, "read-secret", 'path "secret/*" { capabilities = ["read", "list"] }\n'
            'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }')
    client.auth.approle.create_or_update_approle(role, token_policies=["read-secret"],
                                                 token_ttl="10m")
    role_id = client.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id(role)["data"]["secret_id"]
    return role_id, secret_id


def test_approle_login(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "approle-value"},
                                             mount_point="secret")
    role_id, secret_id = _approle(openbao, kv)
    write(tmp_path / "secret-id", secret_id + "\n")
    auth = {"method": "approle", "role_id_env": "MY_ROLE_ID", "secret_id_file": "secret-id"}
    source = make(openbao, tmp_path, {"MY_ROLE_ID": role_id, "VAULT_TOKEN": "ignored",
                                      "HOME": str(tmp_path)}, path=path, auth=auth)
    assert value(fetch(source, Request("A", "A"))["A"]) == "approle-value"
    health = source.check(Deadline(20))
    assert health.detail.startswith(f"{openbao.url}: token from approle login at "
                                    "auth/approle; TTL ")
    assert "renewable; policies: default, read-secret; secret/ is KV v2" in health.detail
    assert source.token_env_vars() == ("VAULT_TOKEN", "BAO_TOKEN", "MY_ROLE_ID")
    bad = make(openbao, tmp_path, {"MY_ROLE_ID": role_id, "HOME": str(tmp_path)}, path=path,
               auth={"method": "approle", "role_id_env": "MY_ROLE_ID",
                     "secret_id_env": "UNSET_SECRET_ID"})
    with pytest.raises(SourceError) as failure:
        fetch(bad, Request("A", "A"))
    assert failure.value.message == ("vault: the AppRole secret id is read from "
                                     "$UNSET_SECRET_ID, which is unset or empty")
    wrong = make(openbao, tmp_path, {"R": role_id, "S": "not-the-secret-id", "HOME": "/"},
                 path=path, auth={"method": "approle", "role_id_env": "R",
                                  "secret_id_env": "S"})
    with pytest.raises(SourceError) as failure:
        fetch(wrong, Request("A", "A"))
    assert failure.value.message.startswith("vault: approle login at auth/approle failed: ")
    assert "not-the-secret-id" not in failure.value.message


def test_userpass_login(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "userpass-value"},
                                             mount_point="secret")
    if "userpass/" not in kv.sys.list_auth_methods()["data"]:
        kv.sys.enable_auth_method("userpass")
    _policy(kv, "read-secret", 'path "secret/*" { capabilities = ["read", "list"] }')
    kv.auth.userpass.create_or_update_user("alice", "correct-horse-1",
                                           policies=["read-secret"])
    auth = {"method": "userpass", "username": "alice", "password_env": "ALICE_PW"}
    source = make(openbao, tmp_path, {"ALICE_PW": "correct-horse-1", "HOME": "/"}, path=path,
                  auth=auth)
    assert value(fetch(source, Request("A", "A"))["A"]) == "userpass-value"
    assert source.token_env_vars() == ("VAULT_TOKEN", "BAO_TOKEN", "ALICE_PW")
    no_tty = make(openbao, tmp_path, {"HOME": "/"}, path=path, auth=auth)
    with pytest.raises(SourceError) as failure:
        fetch(no_tty, Request("A", "A"))
    assert failure.value.message == ("vault: userpass login as alice: $ALICE_PW is unset and "
                                     "there is no terminal to ask for the password")
    wrong = make(openbao, tmp_path, {"ALICE_PW": "wrong-password", "HOME": "/"}, path=path,
                 auth=auth)
    with pytest.raises(SourceError) as failure:
        fetch(wrong, Request("A", "A"))
    assert failure.value.message == ("vault: userpass login at auth/userpass as alice failed: "
                                     "invalid username or password")


def _jwt(key: Any, claims: dict[str, Any]) -> str:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64(signature)}"


def test_jwt_login(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "jwt-value"},
                                             mount_point="secret")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    if "jwt/" not in kv.sys.list_auth_methods()["data"]:
        kv.sys.enable_auth_method("jwt")
    _policy(kv, "read-secret", 'path "secret/*" { capabilities = ["read", "list"] }')
    kv.write_data("auth/jwt/config", data={"jwt_validation_pubkeys": [public.decode()]})
    kv.write_data("auth/jwt/role/ci", data={
        "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["keyrun"],
        "token_policies": ["read-secret"], "token_ttl": "5m"})
    now = int(time.time())
    token = _jwt(key, {"sub": "ci-job", "aud": "keyrun", "iat": now, "nbf": now - 5,
                       "exp": now + 300})
    write(tmp_path / "jwt", token)
    source = make(openbao, tmp_path, {"HOME": "/"}, path=path,
                  auth={"method": "jwt", "role": "ci", "token_file": "jwt"})
    assert value(fetch(source, Request("A", "A"))["A"]) == "jwt-value"
    assert "token from jwt login at auth/jwt as role ci" in source.check(Deadline(20)).detail
    from_env = make(openbao, tmp_path, {"HOME": "/", "CI_JWT": token}, path=path,
                    auth={"method": "jwt", "role": "ci", "token_env": "CI_JWT"})
    assert value(fetch(from_env, Request("A", "A"))["A"]) == "jwt-value"
    assert "CI_JWT" in from_env.token_env_vars()


class TokenReviews:
    """The Kubernetes API's TokenReview endpoint over real HTTP: OpenBao's kubernetes auth
    asks it whether a service account token is valid."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        reviews = self.reviews = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reviews.append((self.path, body["spec"]["token"]))
                valid = body["spec"]["token"].endswith(".c2ln")
                user = {"username": "system:serviceaccount:apps:agent", "uid": "uid-1"}
                answer = json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                     "kind": "TokenReview",
                                     "status": {"authenticated": valid,
                                                "user": user if valid else {}}}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _self_signed_pem() -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _service_account_jwt(signature: str = "c2ln") -> str:
    import base64

    def b64(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": "kubernetes/serviceaccount",
              "kubernetes.io/serviceaccount/namespace": "apps",
              "kubernetes.io/serviceaccount/service-account.name": "agent",
              "kubernetes.io/serviceaccount/service-account.uid": "uid-1",
              "sub": "system:serviceaccount:apps:agent"}
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.{signature}"


def test_kubernetes_login(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "k8s-value"},
                                             mount_point="secret")
    reviews = TokenReviews()
    try:
        if "kubernetes/" not in kv.sys.list_auth_methods()["data"]:
            kv.sys.enable_auth_method("kubernetes")
        kv.write_data("auth/kubernetes/config", data={
            "kubernetes_host": reviews.url, "token_reviewer_jwt": "reviewer",
            "disable_local_ca_jwt": True, "kubernetes_ca_cert": _self_signed_pem()})
        _policy(kv, "read-secret", 'path "secret/*" { capabilities = ["read", "list"] }')
        kv.write_data("auth/kubernetes/role/app", data={
            "bound_service_account_names": ["agent"],
            "bound_service_account_namespaces": ["apps"], "token_policies": ["read-secret"]})
        account = tmp_path / "sa-token"
        auth = {"method": "kubernetes", "role": "app", "token_file": str(account)}
        with pytest.raises(SourceError) as failure:
            fetch(make(openbao, tmp_path, {"HOME": "/"}, path=path, auth=auth),
                  Request("A", "A"))
        assert failure.value.message == ("vault: kubernetes login: no service account token "
                                         f"in {account}")
        write(account, _service_account_jwt())
        source = make(openbao, tmp_path, {"HOME": "/"}, path=path, auth=auth)
        assert value(fetch(source, Request("A", "A"))["A"]) == "k8s-value"
        assert reviews.reviews[-1] == ("/apis/authentication.k8s.io/v1/tokenreviews",
                                       _service_account_jwt())
        assert "token from kubernetes login at auth/kubernetes as role app" in \
            source.check(Deadline(20)).detail
        write(account, _service_account_jwt("YmFk"))
        with pytest.raises(SourceError) as failure:
            fetch(make(openbao, tmp_path, {"HOME": "/"}, path=path, auth=auth),
                  Request("A", "A"))
        assert failure.value.message.startswith(
            "vault: kubernetes login at auth/kubernetes as role app failed: ")
    finally:
        reviews.stop()


def test_token_method_names_its_variable_or_file(openbao: OpenBao, kv: Any,
                                                 tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "token-method"},
                                             mount_point="secret")
    token = kv.auth.token.create(policies=["root"], ttl="10m")["auth"]["client_token"]
    write(tmp_path / "token.txt", token + "\n")
    by_env = make(openbao, tmp_path, {"TEAM_TOKEN": token, "VAULT_TOKEN": "wrong"},
                  path=path, auth={"method": "token", "token_env": "TEAM_TOKEN"})
    assert value(fetch(by_env, Request("A", "A"))["A"]) == "token-method"
    assert by_env.token_env_vars() == ("VAULT_TOKEN", "BAO_TOKEN", "TEAM_TOKEN")
    detail = by_env.check(Deadline(20)).detail
    assert re.search(r"token from TEAM_TOKEN; TTL (9|10)m, renewable; policies: root;", detail)
    assert token not in detail
    by_file = make(openbao, tmp_path, {}, path=path,
                   auth={"method": "token", "token_file": "token.txt"})
    assert value(fetch(by_file, Request("A", "A"))["A"]) == "token-method"
    plain = make(openbao, tmp_path, {"VAULT_TOKEN": token}, path=path,
                 auth={"method": "token"})
    assert value(fetch(plain, Request("A", "A"))["A"]) == "token-method"


def test_userpass_prompts_on_a_terminal(openbao: OpenBao, kv: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "prompted"},
                                             mount_point="secret")
    if "userpass/" not in kv.sys.list_auth_methods()["data"]:
        kv.sys.enable_auth_method("userpass")
    _policy(kv, "read-secret", 'path "secret/*" { capabilities = ["read", "list"] }')
    kv.auth.userpass.create_or_update_user("bob", "bob-password-1", policies=["read-secret"])
    prompts: list[str] = []

    def typed(prompt: str) -> str:
        prompts.append(prompt)
        return "bob-password-1"

    monkeypatch.setattr("getpass.getpass", typed)
    source = make(openbao, tmp_path, {}, interactive=True, path=path,
                  auth={"method": "userpass", "username": "bob"})
    assert value(fetch(source, Request("A", "A"))["A"]) == "prompted"
    assert prompts == [f"Vault password for bob ({openbao.url}): "]


@pytest.mark.parametrize(("auth", "message"), [
    ({"method": "ldap"}, "auth method 'ldap' is not supported"),
    ({"method": "approle", "role_id_env": "R", "password_env": "P"},
     "unknown auth setting 'password_env' for method 'approle'"),
    ({"method": "approle"}, "give the role id with exactly one of role_id, role_id_env, "
                            "role_id_file"),
    ({"method": "userpass"}, "auth method 'userpass' needs 'username'"),
    ({"method": "jwt", "role": "r"}, "give the JWT with exactly one of token_env, token_file"),
])
def test_auth_settings_are_validated(auth: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        check_settings(VaultSource, "vault", {"auth": auth}, "[sources.vault]")
    assert failure.value.message == f"[sources.vault] auth: {message}"


# tokens that no longer work, and paths a token may not read


def test_expired_token_has_its_own_message(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "x"}, mount_point="secret")
    short = kv.auth.token.create(policies=["root"], ttl="1s", explicit_max_ttl="1s")
    time.sleep(2.2)
    source = make(openbao, tmp_path, {"VAULT_TOKEN": short["auth"]["client_token"],
                                      "HOME": "/"}, path=path)
    outcome = as_problem(fetch(source, Request("A", "A"))["A"])
    assert outcome.kind == "denied"
    assert outcome.message == (
        f"token expired, revoked or not allowed to read secret/{path} (token from "
        f"VAULT_TOKEN) — renew or replace the token (vault login), or grant read on "
        f"secret/{path} to its policies")
    with pytest.raises(SourceError) as failure:
        source.check(Deadline(20))
    assert failure.value.message == ("vault: token expired, revoked or not allowed to read "
                                     "auth/token/lookup-self (token from VAULT_TOKEN)")


def test_denied_path_names_the_path_and_token_source(openbao: OpenBao, kv: Any,
                                                     tmp_path: Path) -> None:
    allowed, hidden = unique(), unique()
    for path in (allowed, hidden):
        kv.secrets.kv.v2.create_or_update_secret(path, secret={"A": "x"}, mount_point="secret")
    _policy(kv, "one-path", f'path "secret/data/{allowed}" {{ capabilities = ["read"] }}')
    token = kv.auth.token.create(policies=["one-path"], ttl="10m")["auth"]["client_token"]
    environ = {"VAULT_TOKEN": token, "HOME": "/"}
    assert value(fetch(make(openbao, tmp_path, environ, path=allowed),
                       Request("A", "A"))["A"]) == "x"
    outcome = as_problem(fetch(make(openbao, tmp_path, environ, path=hidden),
                            Request("A", "A"))["A"])
    assert outcome == Problem("denied", f"token expired, revoked or not allowed to read "
                                        f"secret/data/{hidden} (token from VAULT_TOKEN) — renew "
                                        "or replace the token (vault login), or grant read on "
                                        f"secret/data/{hidden} to its policies")
    assert token not in outcome.message


# the server: sealed, stopped, namespaces, TLS, retries


def test_sealed_server(private_openbao: OpenBao, tmp_path: Path) -> None:
    private_openbao.client().sys.seal()
    source = make(private_openbao, tmp_path)
    for call in (lambda: fetch(source, Request("A", "A")), lambda: source.check(Deadline(20))):
        with pytest.raises(SourceError) as failure:
            call()
        assert failure.value.message == (f"vault: the Vault server at {private_openbao.url} "
                                         "is sealed")
        assert failure.value.hint is not None
        assert "operator unseal" in failure.value.hint


def test_stopped_server(private_openbao: OpenBao, tmp_path: Path) -> None:
    private_openbao.stop()
    source = make(private_openbao, tmp_path)
    started = time.monotonic()
    with pytest.raises(SourceError) as failure:
        fetch(source, Request("A", "A"))
    assert time.monotonic() - started < 3
    assert failure.value.message == (f"vault: cannot reach the Vault server at "
                                     f"{private_openbao.url}: Connection refused")


def test_namespace_option_and_variable(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    namespace = unique("ns")
    kv.sys.create_namespace(namespace)
    inner = openbao.client()
    inner.adapter.namespace = namespace
    inner.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
    inner.secrets.kv.v2.create_or_update_secret("app", secret={"A": "in-namespace"},
                                                mount_point="kv")
    by_option = make(openbao, tmp_path, mount="kv", path="app", namespace=namespace)
    assert value(fetch(by_option, Request("A", "A"))["A"]) == "in-namespace"
    assert f"(namespace {namespace})" in by_option.check(Deadline(20)).detail
    by_variable = make(openbao, tmp_path, {"VAULT_TOKEN": ROOT_TOKEN,
                                           "VAULT_NAMESPACE": namespace}, mount="kv", path="app")
    assert value(fetch(by_variable, Request("A", "A"))["A"]) == "in-namespace"
    outside = make(openbao, tmp_path, mount="kv", path="app")
    assert as_problem(fetch(outside, Request("A", "A"))["A"]).kind == "denied"


def test_rate_limited_reads_are_retried_inside_the_deadline(openbao: OpenBao, kv: Any,
                                                            tmp_path: Path) -> None:
    kv.sys.enable_secrets_engine("kv", path="limited", options={"version": "2"})
    for n in range(3):
        kv.secrets.kv.v2.create_or_update_secret(f"k{n}", secret={"value": f"v{n}"},
                                                 mount_point="limited")
    kv.write_data("sys/quotas/rate-limit/keyrun-test",
                  data={"rate": 2, "interval": "1s", "path": "limited/"})
    try:
        source = make(openbao, tmp_path, mount="limited", path="{key}")
        started = time.monotonic()
        got = fetch(source, *(Request(f"K{n}", f"k{n}") for n in range(3)))
        assert [value(got[f"K{n}"]) for n in range(3)] == ["v0", "v1", "v2"]
        assert time.monotonic() - started < 10
        with pytest.raises(SourceError) as failure:
            source.fetch([Request(f"K{n}", f"k{n}") for n in range(3)], Deadline(0.3))
        assert "HTTP 429" in failure.value.message or "timed out" in failure.value.message
    finally:
        kv.delete("sys/quotas/rate-limit/keyrun-test")


@pytest.fixture
def tls_openbao(tmp_path: Path) -> Iterator[tuple[OpenBao, Path]]:
    """A dev server on TLS with a CA of its own (``-dev-tls``)."""
    server = OpenBao(tmp_path / "tls")
    certs = tmp_path / "tls-certs"
    certs.mkdir()
    env = {"HOME": str(server.home), "PATH": os.environ.get("PATH", "")}
    server.url = f"https://127.0.0.1:{server.port}"
    with server.log.open("wb") as log:
        server.process = subprocess.Popen(
            [server.binary, "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={certs}",
             f"-dev-root-token-id={ROOT_TOKEN}", f"-dev-listen-address=127.0.0.1:{server.port}",
             "-dev-no-store-token"], stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
    try:
        ca = certs / "vault-ca.pem"
        for _ in range(300):
            if ca.exists() and server.log.read_text().count("Root Token"):
                break
            time.sleep(0.05)
        else:
            unavailable(f"OpenBao -dev-tls did not start: {server.log.read_text()[-1000:]}")
        yield server, ca
    finally:
        server.stop()


def test_tls_ca_and_failures(tls_openbao: tuple[OpenBao, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    server, ca = tls_openbao
    base = {"VAULT_TOKEN": ROOT_TOKEN, "HOME": "/"}

    def source(**extra: str) -> VaultSource:
        return make(server, tmp_path, dict(base, **extra), path="nothing-here")

    outcome = fetch(source(VAULT_CACERT=str(ca)), Request("A", "A"))["A"]
    assert as_problem(outcome).kind == "missing"
    assert as_problem(fetch(make(server, tmp_path, base, path="x", ca_cert=str(ca)),
                         Request("A", "A"))["A"]).kind == "missing"
    with pytest.raises(SourceError) as failure:
        fetch(source(), Request("A", "A"))
    assert failure.value.message.startswith(f"vault: TLS failure talking to {server.url}: ")
    assert "certificate verify failed" in failure.value.message
    assert "VAULT_CACERT" in (failure.value.hint or "")
    with pytest.raises(ConfigError) as bad:
        fetch(source(VAULT_SKIP_VERIFY="yes please"), Request("A", "A"))
    assert bad.value.message == "VAULT_SKIP_VERIFY='yes please' is not a boolean"
    capsys.readouterr()
    insecure = source(VAULT_SKIP_VERIFY="true")
    assert as_problem(fetch(insecure, Request("A", "A"))["A"]).kind == "missing"
    assert capsys.readouterr().err == (
        f"keyrun: warning: vault: VAULT_SKIP_VERIFY is true: the TLS certificate of "
        f"{server.url} is not verified, so the token and secrets can be intercepted (set "
        "VAULT_CACERT instead)\n")
    with pytest.raises(SourceError) as doctor:
        insecure.check(Deadline(20))
    assert doctor.value.message.startswith(
        f"vault: VAULT_SKIP_VERIFY is true: the TLS certificate of {server.url} is not verified")
    assert as_problem(fetch(source(VAULT_SKIP_VERIFY="false", VAULT_CACERT=str(ca)),
                         Request("A", "A"))["A"]).kind == "missing"
    with pytest.raises(ConfigError) as missing_ca:
        fetch(source(VAULT_CACERT=str(tmp_path / "none.pem")), Request("A", "A"))
    assert missing_ca.value.message == f"VAULT_CACERT names {tmp_path / 'none.pem'}, which " \
                                       "does not exist"
    if shutil.which("openssl"):
        capath = tmp_path / "capath"
        capath.mkdir()
        shutil.copy(ca, capath / "ca.pem")
        subprocess.run(["openssl", "rehash", str(capath)], check=True, capture_output=True)
        assert as_problem(fetch(source(VAULT_CAPATH=str(capath)),
                             Request("A", "A"))["A"]).kind == "missing"
    with pytest.raises(ConfigError) as half:
        fetch(source(VAULT_CACERT=str(ca), VAULT_CLIENT_CERT=str(ca)), Request("A", "A"))
    assert half.value.message == "VAULT_CLIENT_CERT is set but VAULT_CLIENT_KEY is not"


def test_tls_client_certificate(mtls_openbao: MutualTlsOpenBao, tmp_path: Path) -> None:
    files = mtls_openbao.tls
    mtls_openbao.client().secrets.kv.v2.create_or_update_secret(
        "demo/dev", secret={"A": "over-mutual-tls"}, mount_point="secret")
    base = {"VAULT_TOKEN": ROOT_TOKEN, "HOME": "/", "VAULT_CACERT": str(files["ca"])}
    with_cert = dict(base, VAULT_CLIENT_CERT=str(files["client"]),
                     VAULT_CLIENT_KEY=str(files["client-key"]))
    source = make(mtls_openbao, tmp_path, with_cert, url=mtls_openbao.tls_url, project="demo")
    assert value(fetch(source, Request("A", "A"))["A"]) == "over-mutual-tls"
    with pytest.raises(SourceError) as failure:
        fetch(make(mtls_openbao, tmp_path, base, url=mtls_openbao.tls_url, project="demo"),
              Request("A", "A"))
    assert failure.value.message.startswith(
        f"vault: TLS failure talking to {mtls_openbao.tls_url}: ")
    assert "certificate required" in failure.value.message


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError) as failure:
        check_settings(VaultSource, "vault", {"url": "vault.example.com"}, "[sources.vault]")
    assert failure.value.message == ("[sources.vault]: url 'vault.example.com' must start "
                                     "with https:// or http://")
    with pytest.raises(ConfigError) as failure:
        check_settings(VaultSource, "vault", {"child_token_ttl": "soon"}, "[sources.vault]")
    assert failure.value.message == "[sources.vault]: child_token_ttl = 'soon' is not a duration"
    with pytest.raises(ConfigError):
        check_settings(VaultSource, "vault", {"child_token_ttl": "1h",
                                              "child_token_max_ttl": "10m"}, "[sources.vault]")


def test_docstring_example_is_valid() -> None:
    import inspect
    import tomllib

    doc = inspect.getdoc(VaultSource) or ""
    example = tomllib.loads(inspect.cleandoc(doc.split(".. code-block:: toml", 1)[1]))
    assert set(example["sources"]) == {"vault", "redis"}
    for name, table in example["sources"].items():
        settings = {k: v for k, v in table.items() if k != "type"}
        check_settings(VaultSource, name, settings, f"[sources.{name}]")
    assert example["keys"]["REDIS_USER"]["field"] == "username"


def test_url_defaults_to_vault_addr_then_the_cli_default(tmp_path: Path) -> None:
    def url(environ: dict[str, str]) -> str:
        context = Context("p", "dev", tmp_path, environ)
        return VaultSource("v", check_settings(VaultSource, "v", {}, "w"), context).url

    assert url({"VAULT_ADDR": "https://vault:8200/"}) == "https://vault:8200"
    assert url({"BAO_ADDR": "https://bao:8200"}) == "https://bao:8200"
    assert url({}) == "https://127.0.0.1:8200"


# the CLI, as a real process


def project(tmp_path: Path, server: OpenBao, body: str) -> Path:
    return write_project(tmp_path / "project", f'project = "demo"\ndefault_env = "dev"\n{body}'
                         .replace("URL", server.url))


def test_cli_run_with_kv(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"OPENAI_API_KEY": CANARY},
                                             mount_point="secret")
    root = project(tmp_path, openbao, f"""
[keys]
OPENAI_API_KEY = {{}}

[sources.vault]
type = "vault"
url = "URL"
path = "{path}"

[env.dev]
sources = ["vault"]
""")
    env = clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN)
    code = ("import os, hashlib; v = os.environ['OPENAI_API_KEY']; "
            "print(hashlib.sha256(v.encode()).hexdigest(), 'VAULT_TOKEN' in os.environ)")
    done = keyrun(["-e", "dev", "--", "python3", "-c", code], cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    import hashlib

    assert done.stdout.split() == [hashlib.sha256(CANARY.encode()).hexdigest(), "False"]
    assert_no_leak(CANARY, done.stdout, done.stderr, root=tmp_path)
    assert_no_leak(ROOT_TOKEN + "-", done.stdout)
    log = json.loads((tmp_path / "access.log").read_text().splitlines()[-1])
    assert log["keys"][0]["version"] == "1"
    passed = project(tmp_path, openbao, (root / "keyrun.toml").read_text().split("\n", 2)[2]
                     .replace('sources = ["vault"]', 'sources = ["vault"]\npass_env = '
                              '["VAULT_TOKEN"]'))
    done = keyrun(["--", "python3", "-c", "import os; print(os.environ['VAULT_TOKEN'])"],
                  cwd=passed, env=env)
    assert done.stdout == "root\n"


def test_cli_failures_exit_125(openbao: OpenBao, private_openbao: OpenBao,
                               tmp_path: Path) -> None:
    body = """
[keys]
A = {}

[sources.vault]
type = "vault"
url = "URL"
path = "nothing-here"

[env.dev]
sources = ["vault"]
"""
    root = project(tmp_path, private_openbao, body)
    env = clean_env(tmp_path, VAULT_TOKEN="not-a-real-token")
    done = keyrun(["--", "true"], cwd=root, env=env)
    assert done.returncode == 125
    assert ("  A: vault: token expired, revoked or not allowed to read secret/nothing-here "
            "(token from VAULT_TOKEN)") in done.stderr
    assert "not-a-real-token" not in done.stderr
    private_openbao.client().sys.seal()
    done = keyrun(["--", "true"], cwd=root, env=clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN))
    assert done.returncode == 125
    assert f"vault: the Vault server at {private_openbao.url} is sealed" in done.stderr
    private_openbao.stop()
    done = keyrun(["--", "true"], cwd=root, env=clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN))
    assert done.returncode == 125
    assert f"cannot reach the Vault server at {private_openbao.url}" in done.stderr
    done = keyrun(["--", "true"], cwd=root, env=clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN,
                                                          VAULT_SKIP_VERIFY="perhaps"))
    assert done.returncode == 125
    assert "VAULT_SKIP_VERIFY='perhaps' is not a boolean" in done.stderr


def test_cli_list_doctor_and_set(openbao: OpenBao, kv: Any, tmp_path: Path) -> None:
    path = unique()
    kv.secrets.kv.v2.create_or_update_secret(path, secret={"OPENAI_API_KEY": CANARY,
                                                           "OTHER": "other-value-01"},
                                             mount_point="secret")
    kv.secrets.kv.v2.update_metadata(path, custom_metadata={"owner": "team-a"},
                                     mount_point="secret")
    root = project(tmp_path, openbao, f"""
[keys]
OPENAI_API_KEY = {{}}
OTHER = {{}}

[sources.vault]
type = "vault"
url = "URL"
path = "{path}"

[env.dev]
sources = ["vault"]
rotate_after = "90d"
""")
    env = clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN)
    listed = keyrun(["list", "--json"], cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["keys"]}
    row = rows["OPENAI_API_KEY"]
    assert (row["source"], row["location"], row["status"], row["version"], row["error"]) == (
        "vault", f"secret/{path}#OPENAI_API_KEY", "ok", "1", None)
    assert row["preview"] == "kr-…"  # at most a quarter of the canary's 26 characters
    assert datetime.fromisoformat(row["updated"]) <= datetime.now(UTC)
    verbose = keyrun(["-v", "list"], cwd=root, env=env)
    assert "OPENAI_API_KEY: custom metadata: owner=team-a" in verbose.stdout
    doctor = keyrun(["doctor", "--json"], cwd=root, env=env)
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    sources = checks["sources"]
    assert sources["status"] == "pass", sources
    assert sources["message"].startswith(f"vault: {openbao.url}: token from VAULT_TOKEN; no "
                                         "expiry, not renewable; policies: root; secret/ is "
                                         "KV v2 (")
    assert checks["rotation"]["status"] == "pass"
    assert checks["missing-keys"]["status"] == "pass"
    done = keyrun(["set", "OPENAI_API_KEY", "-e", "dev"], cwd=root, env=env,
                  input="sk-rotated-value-0001\n")
    assert done.returncode == 0, done.stderr
    assert f"secret/{path}#OPENAI_API_KEY (version 2)" in done.stdout + done.stderr
    stored = kv.secrets.kv.v2.read_secret_version(path, mount_point="secret",
                                                  raise_on_deleted_version=True)["data"]
    assert stored["data"] == {"OPENAI_API_KEY": "sk-rotated-value-0001",
                              "OTHER": "other-value-01"}
    for output in (listed, doctor, done):
        assert_no_leak(CANARY, output.stdout, output.stderr)
        assert_no_leak("sk-rotated-value-0001", output.stdout, output.stderr)
    assert_no_leak(CANARY, root=tmp_path)


def test_cli_skip_verify_warns_on_run_and_fails_doctor(tls_openbao: tuple[OpenBao, Path],
                                                       tmp_path: Path) -> None:
    server, ca = tls_openbao
    import hvac

    client = hvac.Client(url=server.url, token=ROOT_TOKEN, verify=str(ca))
    client.secrets.kv.v2.create_or_update_secret("demo/dev", secret={"A": CANARY},
                                                 mount_point="secret")
    root = project(tmp_path, server, """
[keys]
A = {}

[sources.vault]
type = "vault"
url = "URL"

[env.dev]
sources = ["vault"]
""")
    env = clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN, VAULT_SKIP_VERIFY="1")
    done = keyrun(["--", "python3", "-c", "import os; print(len(os.environ['A']))"],
                  cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{len(CANARY)}\n"
    assert done.stderr == (f"keyrun: warning: vault: VAULT_SKIP_VERIFY is true: the TLS "
                           f"certificate of {server.url} is not verified, so the token and "
                           "secrets can be intercepted (set VAULT_CACERT instead)\n")
    doctor = keyrun(["doctor", "--json"], cwd=root, env=env)
    assert doctor.returncode == 1
    sources = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["sources"]
    assert sources["status"] == "fail"
    assert sources["message"].startswith("vault: VAULT_SKIP_VERIFY is true: the TLS "
                                         f"certificate of {server.url} is not verified")
    verified = keyrun(["--", "true"], cwd=root, env=clean_env(
        tmp_path, VAULT_TOKEN=ROOT_TOKEN, VAULT_CACERT=str(ca)))
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""
    unverified = keyrun(["--", "true"], cwd=root, env=clean_env(tmp_path,
                                                                VAULT_TOKEN=ROOT_TOKEN))
    assert unverified.returncode == 125
    assert f"vault: TLS failure talking to {server.url}" in unverified.stderr
    for output in (done, doctor, verified, unverified):
        assert_no_leak(CANARY, output.stdout, output.stderr)
