"""Logging in to Vault / OpenBao for the ``vault`` source: the ``auth`` settings, and where
the token comes from when there are none (``VAULT_TOKEN``, a token helper, ``~/.vault-token``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from keyrun.errors import ConfigError, SourceError
from keyrun.ownership import read_trusted
from keyrun.secret import Secret
from keyrun.sources import Deadline
from keyrun.sources.vault_transport import VaultApi, VaultHttpError, env_value

KUBERNETES_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 (a path)
TOKEN_VARIABLES = ("VAULT_TOKEN", "BAO_TOKEN")

# auth = { method = …, … }: the settings each method takes (besides method and mount).
AUTH_METHODS: dict[str, tuple[str, ...]] = {
    "token": ("token_env", "token_file"),
    "approle": ("role_id", "role_id_env", "role_id_file", "secret_id_env", "secret_id_file"),
    "jwt": ("role", "token_env", "token_file"),
    "kubernetes": ("role", "token_file"),
    "userpass": ("username", "password_env"),
}
_REQUIRED = {"jwt": ("role",), "kubernetes": ("role",), "userpass": ("username",)}


class Credential(NamedTuple):
    """A token and where it came from (for messages: never the token itself)."""

    token: Secret
    origin: str
    owned: bool = False  # keyrun logged in for it, so it may revoke it when done


def check_auth(auth: Mapping[str, Any], where: str) -> None:
    """Validate ``auth = { method = …, … }``: a known method and only its own settings."""
    method = auth.get("method")
    if method not in AUTH_METHODS:
        raise ConfigError(f"{where}: auth method {method!r} is not supported",
                          f"valid methods: {', '.join(AUTH_METHODS)}")
    allowed = ("method", "mount", *AUTH_METHODS[method])
    for name, value in auth.items():
        if name not in allowed:
            raise ConfigError(f"{where}: unknown auth setting {name!r} for method {method!r}",
                              f"valid settings: {', '.join(allowed)}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: auth setting {name!r} must be a non-empty string",
                              f"valid settings: {', '.join(allowed)}")
    for name in _REQUIRED.get(method, ()):
        if name not in auth:
            raise ConfigError(f"{where}: auth method {method!r} needs {name!r}",
                              f"e.g. auth = {{ method = \"{method}\", {name} = \"…\" }}")
    if method == "approle":
        _one_of(auth, where, ("role_id", "role_id_env", "role_id_file"), "the role id")
        _one_of(auth, where, ("secret_id_env", "secret_id_file"), "the secret id", optional=True)
    if method == "jwt":
        _one_of(auth, where, ("token_env", "token_file"), "the JWT")


def _one_of(auth: Mapping[str, Any], where: str, names: tuple[str, ...], what: str,
            optional: bool = False) -> None:
    given = [name for name in names if name in auth]
    if len(given) > 1 or (not given and not optional):
        raise ConfigError(f"{where}: give {what} with exactly one of {', '.join(names)}",
                          f"e.g. auth = {{ method = \"{auth['method']}\", {names[-2]} = \"…\" }}")


def auth_env_vars(auth: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The environment variables the auth settings name (they hold credentials)."""
    if not auth:
        return ()
    return tuple(str(v) for k, v in auth.items() if k.endswith("_env"))


class TokenFinder:
    """Finds the token, in order: the ``auth`` settings (a login), ``VAULT_TOKEN``, the
    ``token_helper`` named in ``~/.vault``, ``~/.vault-token``. Never writes a token file."""

    def __init__(self, api: VaultApi, auth: Mapping[str, Any] | None,
                 environ: Mapping[str, str], root: Path, interactive: bool) -> None:
        self.api = api
        self.auth = auth
        self.environ = environ
        self.root = root
        self.interactive = interactive

    @property
    def source(self) -> str:
        return self.api.source

    def find(self, deadline: Deadline) -> Credential:
        if self.auth:
            return self._login(deadline)
        found = env_value(self.environ, "TOKEN")
        if found is not None:
            return Credential(Secret(found[1].strip()), found[0])
        helped = self._from_helper(deadline)
        if helped is not None:
            return helped
        stored = self._home() / ".vault-token"
        text = _read(stored)
        if text:
            return Credential(Secret(text), "~/.vault-token")
        raise SourceError(self.source, f"no Vault token for {self.api.url}: VAULT_TOKEN is "
                          "unset, no token_helper is configured in ~/.vault and there is no "
                          "~/.vault-token",
                          "log in with `vault login` (or `bao login`), export VAULT_TOKEN, or "
                          "configure auth = { method = \"approle\", … } for this source")

    def _home(self) -> Path:
        home = self.environ.get("HOME")
        return Path(home) if home else Path.home()

    def _from_helper(self, deadline: Deadline) -> Credential | None:
        config = self.environ.get("VAULT_CONFIG_PATH") or str(self._home() / ".vault")
        text = _read(Path(config))
        match = re.search(r'(?m)^\s*token_helper\s*=\s*"((?:[^"\\]|\\.)*)"', text or "")
        if match is None:
            return None
        import subprocess

        helper = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
        if helper.startswith("~/"):
            helper = str(self._home() / helper[2:])
        try:  # as the Vault CLI runs it: through sh, so the helper may carry arguments
            done = subprocess.run(["/bin/sh", "-c", f"{helper} get"], capture_output=True,
                                  env=dict(self.environ), check=False,
                                  timeout=max(0.1, deadline.remaining()))
        except subprocess.TimeoutExpired:
            raise SourceError(self.source, f"the token helper {helper} (from {config}) did not "
                              "answer in time", "check the helper program") from None
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SourceError(self.source, f"the token helper {helper} (from {config}) failed "
                              f"with status {done.returncode}"
                              + (f": {reason[-1][:200]}" if reason else ""),
                              "log in again so the helper stores a token (vault login)")
        token = done.stdout.decode("utf-8", "replace").strip()
        return Credential(Secret(token), f"the token helper {helper}") if token else None

    # logins

    def _login(self, deadline: Deadline) -> Credential:
        auth = self.auth or {}
        method = str(auth["method"])
        mount = str(auth.get("mount") or method)
        if method == "token":
            return self._token_setting(auth)
        if method == "approle":
            role_id = self._secret(auth, "role_id", "the AppRole role id")
            secret_id = self._secret(auth, "secret_id", "the AppRole secret id") \
                if "secret_id_env" in auth or "secret_id_file" in auth else None
            return self._log_in(lambda vault: vault.auth.approle.login(
                role_id, secret_id, use_token=False, mount_point=mount),
                f"approle login at auth/{mount}", deadline)
        if method == "jwt":
            jwt = self._secret(auth, "token", "the JWT")
            return self._log_in(lambda vault: vault.auth.jwt.jwt_login(
                auth["role"], jwt, use_token=False, path=mount),
                f"jwt login at auth/{mount} as role {auth['role']}", deadline)
        if method == "kubernetes":
            path = str(auth.get("token_file") or KUBERNETES_TOKEN)
            account = _read(self._path(path))
            if not account:
                raise SourceError(self.source, f"kubernetes login: no service account token "
                                  f"in {path}", "run inside a pod with a service account "
                                  "token mounted, or set auth.token_file")
            return self._log_in(lambda vault: vault.auth.kubernetes.login(
                auth["role"], account, use_token=False, mount_point=mount),
                f"kubernetes login at auth/{mount} as role {auth['role']}", deadline)
        username = str(auth["username"])
        password = self._password(auth, username)
        return self._log_in(lambda vault: vault.auth.userpass.login(
            username, password, use_token=False, mount_point=mount),
            f"userpass login at auth/{mount} as {username}", deadline)

    def _token_setting(self, auth: Mapping[str, Any]) -> Credential:
        if "token_env" in auth or "token_file" in auth:
            token = self._secret(auth, "token", "the token")
            origin = auth.get("token_env") or auth.get("token_file")
            return Credential(Secret(token), str(origin))
        found = env_value(self.environ, "TOKEN")
        if found is None:
            raise SourceError(self.source, "auth method 'token' but VAULT_TOKEN is unset",
                              "export VAULT_TOKEN, or name the variable with auth.token_env")
        return Credential(Secret(found[1].strip()), found[0])

    def _path(self, path: str) -> Path:
        if path.startswith("~/"):
            return self._home() / path[2:]
        return Path(path) if Path(path).is_absolute() else self.root / path

    def _secret(self, auth: Mapping[str, Any], stem: str, what: str) -> str:
        """A credential from ``<stem>``, ``<stem>_env`` or ``<stem>_file``."""
        if stem in auth:
            return str(auth[stem])
        variable = auth.get(f"{stem}_env")
        if variable is not None:
            value = self.environ.get(str(variable), "").strip()
            if not value:
                raise SourceError(self.source, f"{what} is read from ${variable}, which is "
                                  "unset or empty", f"export {variable}")
            return value
        path = str(auth[f"{stem}_file"])
        value = (_read(self._path(path)) or "").strip()
        if not value:
            raise SourceError(self.source, f"{what} is read from {path}, which is missing or "
                              "empty", f"write {what} to {path}")
        return value

    def _password(self, auth: Mapping[str, Any], username: str) -> str:
        variable = auth.get("password_env")
        if variable is not None:
            value = self.environ.get(str(variable), "")
            if value:
                return value
        if not self.interactive:
            named = f"${variable} is unset and " if variable else ""
            raise SourceError(self.source, f"userpass login as {username}: {named}there is no "
                              "terminal to ask for the password",
                              "set auth.password_env to a variable holding the password")
        import getpass

        return getpass.getpass(f"Vault password for {username} ({self.api.url}): ")

    def _log_in(self, login: Callable[[Any], dict[str, Any]], what: str,
                deadline: Deadline) -> Credential:
        """``login(client)``: an hvac login method, called with no token."""
        try:
            answer = login(self.api.client(None, deadline))
        except VaultHttpError as exc:
            raise SourceError(self.source, f"{what} failed: {exc.detail}",
                              "check the auth settings and the credentials they name") from None
        token = (answer.get("auth") or {}).get("client_token")
        if not token:
            raise SourceError(self.source, f"{what} returned no token",
                              "check the auth method's role configuration")
        return Credential(Secret(str(token)), what, owned=True)


def _read(path: Path) -> str | None:
    """A token or settings file: refused when another user owns it or may write it."""
    read = read_trusted(path, "this Vault credential file")
    try:
        return None if read is None else read[0].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
