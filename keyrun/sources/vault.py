"""The ``vault`` source: HashiCorp Vault or OpenBao — KV v1/v2 and dynamic secrets (hvac)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from keyrun.durations import format_age, parse_duration
from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import (
    Context,
    Deadline,
    Health,
    Item,
    Lease,
    Meta,
    Option,
    Outcome,
    Problem,
    Request,
    Source,
)
from keyrun.sources._values import as_text, entry_value
from keyrun.sources.runtime import Endpoint, Runtime, timed_out
from keyrun.sources.vault_auth import (
    TOKEN_VARIABLES,
    Credential,
    TokenFinder,
    auth_env_vars,
    check_auth,
)
from keyrun.sources.vault_transport import (
    DEFAULT_ADDR,
    VaultApi,
    VaultHttpError,
    env_value,
    tls_settings,
)
from keyrun.template import Template

_RELEASE_SECONDS = 10.0
_RENEW_SECONDS = 15.0
_RETRY_RENEWAL = 5.0
_PAUSE_SPARE = 0.2  # a retry is made only if it leaves this much of the deadline for the request
T = TypeVar("T")


class Mount(NamedTuple):
    """A secrets engine, as ``sys/internal/ui/mounts/<path>`` describes it."""

    path: str  # with its trailing slash: "secret/"
    type: str
    version: int = 0  # 1 or 2 for KV

    @property
    def kv(self) -> bool:
        return self.type in ("kv", "generic")

    @property
    def kv2(self) -> bool:
        return self.kv and self.version == 2

    @property
    def per_token(self) -> bool:
        return self.type in ("cubbyhole", "ns_cubbyhole")

    @property
    def point(self) -> str:
        """The mount as hvac's ``mount_point``: ``secret``."""
        return self.path.rstrip("/")

    def inner(self, logical: str) -> str:
        """The entry's path inside the mount (KV v2: without ``data/`` or ``metadata/``)."""
        rest = logical[len(self.path):] if logical.startswith(self.path) else ""
        if self.kv2:
            for prefix in ("data/", "metadata/"):
                rest = rest.removeprefix(prefix)
        return rest


class Entry(NamedTuple):
    """One read: the entry's fields and what Vault said about them."""

    data: Mapping[str, Any]
    version: str | None = None
    updated: datetime | None = None
    expires: datetime | None = None
    lease: Lease | None = None


class _Lease(NamedTuple):
    id: str
    path: str
    duration: float
    renewable: bool
    expires_at: float  # time.monotonic()


Location = tuple[str, str | None]  # (logical path, pinned version)


class VaultSource(Source):
    """HashiCorp Vault or OpenBao: KV v1 and v2 entries, and dynamic secrets with leases.

    ``mount`` + ``path`` name the entry. Without ``{key}`` in the path, one entry holds
    every key as a field of that name (a bundle); with ``{key}``, each key is its own entry
    and ``field`` picks the field (default: the key's own ``field``, else the entry's only
    field, else ``value``). KV v1 or v2 is detected the way the Vault CLI does it
    (``sys/internal/ui/mounts``; a 404 means an old server, so v1); paths are accepted with
    or without ``data/``. A key's ``version`` pins a KV v2 version. KV v2 metadata (when the
    version was written, the current version, custom metadata, deletion times) feeds
    ``list`` and ``doctor``'s ``rotation`` check. ``keyrun set`` writes KV entries, on KV v2
    with check-and-set against the version it read, so a concurrent change is refused
    rather than overwritten; the entry's other fields are kept.

    Any other engine (database, aws, pki…) is read as is. A read that returns a lease puts
    ``run`` in supervise mode: keyrun first makes a child token (short ``child_token_ttl``,
    renewable, an explicit ``child_token_max_ttl``, its parent's own policies), reads every
    leased path with it, renews the token and the leases at half their TTL while the
    command runs (warning when a max TTL nears), and revokes the child token, and with it
    every lease, when the command ends. Several keys reading one path (``field =
    "username"``, ``field = "password"``) share one read and one lease.

    Authentication, first that applies: the ``auth`` settings (``token``, ``approle``,
    ``jwt``, ``kubernetes``, ``userpass`` logins); ``VAULT_TOKEN``; the ``token_helper``
    named in ``~/.vault`` (``$VAULT_CONFIG_PATH``); ``~/.vault-token``. keyrun never writes a
    token file. ``VAULT_TOKEN`` and every variable the ``auth`` settings name are removed
    from the command's environment unless listed in ``pass_env``. The address is ``url``,
    else ``VAULT_ADDR``; the namespace ``namespace``, else ``VAULT_NAMESPACE``; TLS follows
    ``VAULT_CACERT``, ``VAULT_CAPATH``, ``VAULT_CLIENT_CERT`` + ``VAULT_CLIENT_KEY`` and
    ``VAULT_SKIP_VERIFY`` (parsed strictly; when true, a warning on every run and a
    ``doctor`` failure). OpenBao's ``BAO_*`` names are read where the ``VAULT_*`` one is unset.
    HTTP 429 and 5xx answers are retried with backoff inside the run's deadline.

    .. code-block:: toml

        [sources.vault]
        type = "vault"
        url = "https://vault.example.com:8200"
        mount = "secret"
        path = "{project}/{env}"

        [sources.vault.auth]            # optional: else VAULT_TOKEN, token helper, ~/.vault-token
        method = "approle"
        role_id_env = "VAULT_ROLE_ID"
        secret_id_env = "VAULT_SECRET_ID"

        [sources.redis]                 # dynamic: a Redis user made for each run
        type = "vault"
        mount = "database"
        path = "creds/{key}"

        [keys]
        REDIS_USER = { source = "redis", name = "app", field = "username" }
        REDIS_PASSWORD = { source = "redis", name = "app", field = "password" }
    """

    type_name = "vault"
    summary = "HashiCorp Vault / OpenBao: KV v1/v2 and dynamic secrets (leases revoked at exit)"
    extra = "vault"
    has_versions = True
    writable = True
    records_age = True
    options = (
        Option("url", "the server's address; default $VAULT_ADDR, else " + DEFAULT_ADDR,
               template=True, example="https://vault.example.com:8200"),
        Option("mount", "where the secrets engine is mounted (KV v1 or v2 is detected); "
               "empty when path starts with the mount", default="secret", template=True,
               example="secret"),
        Option("path", "the entry under the mount: with {key}, one entry per key; without, "
               "one entry holding every key as a field", default="{project}/{env}",
               template=True, example="{project}/{env}"),
        Option("field", "for one entry per key: the field holding the value when a key sets "
               "no field of its own (default: the entry's only field, else \"value\")",
               example="value"),
        Option("namespace", "a Vault Enterprise / OpenBao namespace; default $VAULT_NAMESPACE",
               template=True, example="team-a"),
        Option("auth", "how to log in: a table with method = token, approle, jwt, kubernetes "
               "or userpass and its settings (role_id_env, secret_id_env, role, token_file, "
               "username, password_env, mount…); default: VAULT_TOKEN, the token helper of "
               "~/.vault, then ~/.vault-token", kind=dict,
               example='{ method = "approle", role_id_env = "VAULT_ROLE_ID", '
                       'secret_id_env = "VAULT_SECRET_ID" }'),
        Option("params", "for engines that make a credential on a write (pki/issue/ROLE…): "
               "the path is written with these parameters, as `vault write PATH k=v` does; "
               "string values may use {project} and {env}", kind=dict,
               example='{ common_name = "app.example.com", ttl = "1h" }'),
        Option("ca_cert", "a CA certificate (PEM) to trust, relative to keyrun.toml; default "
               "$VAULT_CACERT", example="certs/vault-ca.pem"),
        Option("child_token_ttl", "TTL of the child token that holds a run's leases; renewed "
               "at half of it while the command runs", default="5m", example="5m"),
        Option("child_token_max_ttl", "explicit max TTL of that child token: a run's leases "
               "end by then", default="24h", example="24h"),
        Option("unrevocable_leases", "when the token may neither create a child token nor "
               "revoke leases, so a run's credentials would outlive it: refuse to run "
               "(default), or warn and run", default="refuse", choices=("refuse", "warn"),
               example="refuse"),
    )

    def __init__(self, name: str, settings: Mapping[str, Any], context: Context) -> None:
        super().__init__(name, settings, context)
        self._lock = threading.Lock()
        self._api: VaultApi | None = None
        self._credential: Credential | None = None
        self._mounts: list[Mount] = []
        self._lease_token: Credential | None = None  # the child token, or the parent's
        self._child: bool = False
        self._child_accessor: str | None = None
        self._leases: dict[str, _Lease] = {}
        self._warned: set[str] = set()
        self.runtime = Runtime(self, lambda deadline: timed_out(
            self.name, deadline, self.url, "the server"), spare=_PAUSE_SPARE,
            credential="your Vault token")

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        url = settings.get("url")
        if url and not str(url).startswith(("http://", "https://")):
            raise ConfigError(f"{where}: url {url!r} must start with https:// or http://",
                              "e.g. url = \"https://vault.example.com:8200\"")
        if not str(settings["mount"]).strip("/") and not str(settings["path"]).strip("/"):
            raise ConfigError(f"{where}: mount and path are both empty",
                              "e.g. mount = \"secret\", path = \"{project}/{env}\"")
        if settings.get("auth") is not None:
            check_auth(settings["auth"], f"{where} auth")
        for name, value in (settings.get("params") or {}).items():
            if not isinstance(value, str | int | float | bool):
                raise ConfigError(f"{where}: params.{name} must be a string, number or boolean",
                                  "e.g. params = { common_name = \"app.example.com\" }")
        ttl = _duration(settings, "child_token_ttl", where)
        if ttl < 2:
            raise ConfigError(f"{where}: child_token_ttl must be at least 2s",
                              "e.g. child_token_ttl = \"5m\"")
        if _duration(settings, "child_token_max_ttl", where) < ttl:
            raise ConfigError(f"{where}: child_token_max_ttl is shorter than child_token_ttl",
                              "e.g. child_token_ttl = \"5m\", child_token_max_ttl = \"24h\"")

    # names and places

    @property
    def per_key(self) -> bool:
        return Template(str(self.settings["path"]), where=self.name).has_key

    @functools.cached_property
    def endpoint(self) -> Endpoint:
        if self.settings.get("url"):
            return self.runtime.endpoint(self.render("url"), f"[sources.{self.name}] url")
        variable, url = env_value(self.context.environ, "ADDR") or ("default", DEFAULT_ADDR)
        return self.runtime.endpoint(url, variable)

    def endpoints(self) -> tuple[Endpoint, ...]:
        return (self.endpoint,)

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def namespace(self) -> str | None:
        if self.settings.get("namespace"):
            return self.render("namespace").strip("/") or None
        found = env_value(self.context.environ, "NAMESPACE")
        return found[1].strip("/") if found else None

    def logical_path(self, request: Request) -> str:
        """The entry as the Vault CLI names it: ``secret/support-bot/dev``."""
        mount = self.render("mount").strip("/")
        path = self.render("path", request.name if self.per_key else None).strip("/")
        return "/".join(part for part in (mount, path) if part)

    def locate(self, request: Request) -> str:
        where = self.logical_path(request)
        if request.version:
            where += f"@{request.version}"
        pick = request.field if self.per_key else request.name
        return f"{where}#{pick}" if pick else where

    def token_env_vars(self) -> tuple[str, ...]:
        return (*TOKEN_VARIABLES, *auth_env_vars(self.settings.get("auth")))

    # connecting

    def _connect(self, deadline: Deadline) -> tuple[VaultApi, Credential]:
        with self._lock:
            if self._api is None:
                self.runtime.sdk("hvac")
                tls = tls_settings(self.context.environ, self.settings.get("ca_cert"),
                                   self.context.root)
                self._api = VaultApi(self.runtime, self.url, self.namespace, tls)
            if self._credential is None:
                finder = TokenFinder(self._api, self.settings.get("auth"),
                                     self.context.environ, self.context.root,
                                     self.context.interactive)
                self._credential = finder.find(deadline)
            return self._api, self._credential

    def _warn_insecure(self, api: VaultApi) -> None:
        if api.tls.skip_verify and "insecure" not in self._warned:
            self._warned.add("insecure")
            self.warn(f"{api.tls.skip_variable} is true: the TLS certificate of {api.url} is "
                      "not verified, so the token and secrets can be intercepted (set "
                      "VAULT_CACERT instead)")

    def _mount(self, api: VaultApi, credential: Credential, logical: str,
               deadline: Deadline) -> Mount:
        with self._lock:
            for mount in self._mounts:
                if f"{logical}/".startswith(mount.path):
                    return mount
        try:
            # Raw: hvac has no method for the one mount lookup any token may make (the Vault
            # CLI's); hvac's sys/mounts calls need a policy most tokens lack.
            answer = api.client(credential.token, deadline).adapter.get(
                f"/v1/sys/internal/ui/mounts/{logical}")
            data = answer.get("data") or {}
            kind = str(data.get("type") or "")
            options = data.get("options") or {}
            version = int(options.get("version") or 1) if kind in ("kv", "generic") else 0
            mount = Mount(str(data.get("path") or logical.split("/")[0] + "/"), kind, version)
        except VaultHttpError as exc:
            if exc.status != 404:
                raise
            configured = self.render("mount").strip("/") or logical.split("/")[0]
            mount = Mount(f"{configured}/", "kv", 1)  # a server from before KV v2
        with self._lock:
            self._mounts.append(mount)
        return mount

    def _api_path(self, mount: Mount, logical: str, area: str = "data") -> str:
        """The HTTP path (for messages): KV v2 puts ``data/`` (or ``metadata/``) after the
        mount."""
        if not mount.kv2:
            return logical
        return f"{mount.path}{area}/{mount.inner(logical)}".rstrip("/")

    # reading

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        api, credential = self._connect(deadline)
        self._warn_insecure(api)
        wanted: dict[Location, list[Request]] = {}
        for request in requests:
            wanted.setdefault((self.logical_path(request), request.version), []).append(request)
        try:
            entries = self._read_all(api, credential, list(wanted), deadline)
        except BaseException:
            self._abandon_leases()
            raise
        results: dict[str, Outcome] = {}
        for location, group in wanted.items():
            for request in group:
                results[request.key] = self._outcome(request, location, entries[location])
        if not any(isinstance(o, Item) and o.lease for o in results.values()):
            self._abandon_leases()
        return results

    def _read_all(self, api: VaultApi, credential: Credential, locations: list[Location],
                  deadline: Deadline) -> dict[Location, Entry | Problem]:
        mounts = self._in_parallel(
            lambda loc: self._mount_or_problem(api, credential, loc[0], deadline),
            locations, deadline)
        results: dict[Location, Entry | Problem] = {}
        for location, mount in mounts.items():
            if isinstance(mount, Problem):
                results[location] = mount
            elif location[1] is not None and not mount.kv2:
                results[location] = Problem("error", f"{location[0]} pins version "
                                            f"{location[1]}, but {mount.path} is not KV v2 "
                                            "(only KV v2 keeps versions)")
        static = [loc for loc in locations if loc not in results
                  and (_mount(mounts[loc]).kv or _mount(mounts[loc]).per_token)]
        leased = [loc for loc in locations if loc not in results and loc not in static]
        results.update(self._in_parallel(
            lambda loc: self._read(api, credential, _mount(mounts[loc]), loc, deadline),
            static, deadline))
        if leased:
            token = self._lease_credential(api, credential, deadline)
            results.update(self._in_parallel(
                lambda loc: self._read(api, token, _mount(mounts[loc]), loc, deadline),
                leased, deadline))
        return results

    def _mount_or_problem(self, api: VaultApi, credential: Credential, logical: str,
                          deadline: Deadline) -> Mount | Problem:
        try:
            return self._mount(api, credential, logical, deadline)
        except VaultHttpError as exc:
            return self._problem(exc, logical, logical, credential)

    def _read(self, api: VaultApi, credential: Credential, mount: Mount, location: Location,
              deadline: Deadline) -> Entry | Problem:
        logical, version = location
        path = self._api_path(mount, logical)
        if version is not None and not version.isdigit():
            return Problem("error", f"version {version!r} of {logical} is not a "
                                    "KV v2 version number")
        body = self._params() if not mount.kv else None
        vault = api.client(credential.token, deadline)
        try:
            if mount.kv:
                answer = _kv_read(vault, mount, logical, version)
            else:
                answer = vault.write_data(logical, data=body) if body else vault.read(logical)
        except VaultHttpError as exc:
            return self._problem(exc, logical, path, credential, version)
        if mount.kv2:
            return _kv2_entry(answer)
        entry = Entry(answer.get("data") or {})
        lease_id = str(answer.get("lease_id") or "")
        if not lease_id:
            return entry
        return self._leased(entry, lease_id, logical, answer)

    def _params(self) -> dict[str, Any]:
        where = f"[sources.{self.name}] params"
        return {name: Template(value, where=where).render(self.context.project,
                                                          self.context.env)
                if isinstance(value, str) else value
                for name, value in (self.settings.get("params") or {}).items()}

    def _leased(self, entry: Entry, lease_id: str, logical: str,
                answer: Mapping[str, Any]) -> Entry:
        duration = float(answer.get("lease_duration") or 0)
        renewable = bool(answer.get("renewable"))
        with self._lock:
            self._leases[lease_id] = _Lease(lease_id, logical, duration, renewable,
                                            time.monotonic() + duration)
            token_ttl = _duration(self.settings, "child_token_ttl", self.name) \
                if self._child else None
        ttls = [t for t in (duration, token_ttl) if t]
        ttl = min(ttls) if ttls else None
        # No ``expires``: the credential lives as long as the run (renewed, then revoked),
        # so doctor's rotation check has nothing to say about it.
        lease = Lease(lease_id, ttl, renewable or self._child)
        return entry._replace(updated=datetime.now(UTC), lease=lease)

    def _problem(self, exc: VaultHttpError, logical: str, path: str, credential: Credential,
                 version: str | None = None) -> Problem:
        if exc.status == 404:
            return Problem.missing(_not_found(logical, version, exc.body))
        if exc.status == 403:
            return Problem("denied", f"{denied(path, credential)} — renew or "
                                     f"replace the token (vault login), or grant read on "
                                     f"{path} to its policies")
        if exc.status == 405 and not self.settings.get("params"):
            return Problem("error", f"reading {path} failed: {exc.detail} — a path "
                                    "that makes a credential on a write (pki/issue/ROLE…) needs "
                                    "params = { … } in the source (what `vault write` takes)")
        return Problem("error", f"reading {path} failed: {exc.detail} "
                                f"(HTTP {exc.status})")

    def _outcome(self, request: Request, location: Location,
                 entry: Entry | Problem) -> Outcome:
        if isinstance(entry, Problem):
            return entry
        where = self.locate(request)
        if self.per_key:
            field = request.field or self._default_field(entry.data)
            if field is None:
                fields = ", ".join(sorted(entry.data)) or "none"
                return Problem("error", f"{location[0]} holds several fields "
                                        f"({fields}); name one with field = \"…\" on the key")
            if field not in entry.data:
                return Problem.missing(f"no field {field!r} in {location[0]} "
                                       f"(fields: {', '.join(sorted(entry.data)) or 'none'})")
            picked: str | Problem = as_text(entry.data[field])
        else:
            picked = self._from_bundle(request, location[0], entry.data, where)
        if isinstance(picked, Problem):
            return picked
        return Item(Secret(picked), version=entry.version, updated=entry.updated,
                    expires=entry.expires, lease=entry.lease)

    def _default_field(self, data: Mapping[str, Any]) -> str | None:
        configured = self.settings.get("field")
        if configured:
            return str(configured)
        if len(data) == 1:
            return next(iter(data))
        return "value" if "value" in data or not data else None

    def _from_bundle(self, request: Request, logical: str, data: Mapping[str, Any],
                     where: str) -> str | Problem:
        if request.name not in data:
            return Problem.missing(f"no field {request.name!r} in {logical}")
        return entry_value(data[request.name], request.field, where)

    def names(self, deadline: Deadline) -> list[str] | None:
        if self.per_key:
            return None
        request = Request("", "")
        api, credential = self._connect(deadline)
        logical = self.logical_path(request)
        entry = self._read_all(api, credential, [(logical, None)], deadline)[(logical, None)]
        return [] if isinstance(entry, Problem) else sorted(entry.data)

    # leases

    def _lease_credential(self, api: VaultApi, parent: Credential,
                          deadline: Deadline) -> Credential:
        """The token that reads leased paths: a child token made for this run, so that
        revoking it revokes every lease; the parent itself if it may not make one."""
        with self._lock:
            if self._lease_token is not None:
                return self._lease_token
        policies = self._own_policies(api, parent, deadline)
        ttl = _duration(self.settings, "child_token_ttl", self.name)
        max_ttl = _duration(self.settings, "child_token_max_ttl", self.name)
        options = {"policies": policies, "ttl": f"{ttl:.0f}s",
                   "explicit_max_ttl": f"{max_ttl:.0f}s", "renewable": True,
                   "display_name": f"keyrun-{self.context.project}-{self.context.env}",
                   "meta": {"keyrun": f"{self.context.project}/{self.context.env}"},
                   "no_default_policy": "default" not in policies}
        try:
            answer = api.client(parent.token, deadline).auth.token.create(**options)
        except VaultHttpError as exc:
            if exc.status not in (400, 403):
                raise SourceError(self.name, f"cannot create a child token for leased "
                                  f"secrets: {exc.detail}") from None
            if not parent.owned and not self._may_revoke_leases(api, parent, deadline):
                self._unrevocable(parent)
            with self._lock:  # leases are then revoked one by one (or with the login token)
                self._lease_token, self._child = parent, False
            return parent
        auth = answer.get("auth") or {}
        child = Credential(Secret(str(auth.get("client_token"))),
                           f"a child token of {parent.origin}", owned=True)
        with self._lock:
            self._lease_token, self._child = child, True
            self._child_accessor = str(auth.get("accessor") or "") or None
        return child

    def _may_revoke_leases(self, api: VaultApi, token: Credential, deadline: Deadline) -> bool:
        """Whether the token may call sys/leases/revoke (asked of sys/capabilities-self,
        which the default policy allows)."""
        try:
            answer = api.client(token.token, deadline).sys.get_capabilities(
                ["sys/leases/revoke"])
        except VaultHttpError:
            return False
        data = answer["data"] if isinstance(answer.get("data"), dict) else answer
        capabilities = data.get("sys/leases/revoke") or data.get("capabilities") or []
        return bool({"update", "sudo", "root"} & set(capabilities))

    def _unrevocable(self, parent: Credential) -> None:
        message = (f"the token from {parent.origin} may neither create a child token "
                   "(auth/token/create) nor revoke leases (sys/leases/revoke), so the "
                   "credentials made for this run would outlive it")
        if self.settings.get("unrevocable_leases") == "warn":
            self._warn_once("unrevocable", f"{message}; they stay valid until their TTL "
                            "ends (unrevocable_leases = \"warn\")")
            return
        raise SourceError(
            self.name, message,
            "grant the token update on auth/token/create or sys/leases/revoke, log in with "
            "an auth method (keyrun then revokes its login token), or set "
            'unrevocable_leases = "warn" in the source')

    def _own_policies(self, api: VaultApi, parent: Credential, deadline: Deadline) -> list[str]:
        try:
            answer = api.client(parent.token, deadline).auth.token.lookup_self()
        except VaultHttpError as exc:
            if exc.status == 403:
                raise SourceError(self.name, denied("auth/token/lookup-self", parent),
                                  "log in again (vault login) or export a valid VAULT_TOKEN"
                                  ) from None
            raise SourceError(self.name, f"token lookup failed: {exc.detail}") from None
        return sorted(str(p) for p in (answer.get("data") or {}).get("policies") or [])

    def renew_leases(self) -> float | None:
        with self._lock:
            token, child, leases = self._lease_token, self._child, list(self._leases.values())
        if token is None or self._api is None:
            return None
        deadline = Deadline(_RENEW_SECONDS)
        ttls: list[float] = []
        if child:
            ttls.append(self._renew_token(self._api, token, deadline))
        for lease in leases:
            ttl = self._renew_lease(self._api, token, lease, deadline)
            if ttl is not None:
                ttls.append(ttl)
        ttls = [ttl for ttl in ttls if ttl > 0]
        return max(1.0, min(ttls) / 2) if ttls else None

    def _renew_token(self, api: VaultApi, token: Credential, deadline: Deadline) -> float:
        wanted = _duration(self.settings, "child_token_ttl", self.name)
        try:
            answer = api.client(token.token, deadline).auth.token.renew_self(
                increment=f"{wanted:.0f}s")
        except (VaultHttpError, SourceError) as exc:
            self._warn_once("renew-token", "cannot renew the child token that holds this "
                            f"run's leases ({_reason(exc)}); will retry")
            return _RETRY_RENEWAL * 2
        ttl = float((answer.get("auth") or {}).get("lease_duration") or 0)
        if ttl < wanted:
            self._warn_once("max-token", "the child token holding this run's leases reaches "
                            f"its max TTL in {format_age(ttl)}; its leased credentials are "
                            "revoked then (raise child_token_max_ttl)")
        return ttl

    def _renew_lease(self, api: VaultApi, token: Credential, lease: _Lease,
                     deadline: Deadline) -> float | None:
        left = lease.expires_at - time.monotonic()
        if not lease.renewable or lease.duration <= 0:
            if 0 < left < 2 * _duration(self.settings, "child_token_ttl", self.name):
                self._warn_once(f"end:{lease.id}", f"the lease on {lease.path} is not "
                                f"renewable and ends in {format_age(left)}")
            return None
        try:
            answer = api.client(token.token, deadline).sys.renew_lease(
                lease.id, increment=int(lease.duration))
        except (VaultHttpError, SourceError) as exc:
            self._warn_once(f"renew:{lease.id}", f"cannot renew the lease on {lease.path} "
                            f"({_reason(exc)}); will retry")
            return _RETRY_RENEWAL
        ttl = float(answer.get("lease_duration") or 0)
        with self._lock:
            if lease.id in self._leases:
                self._leases[lease.id] = lease._replace(expires_at=time.monotonic() + ttl,
                                                        renewable=ttl > 0)
        if ttl < lease.duration:
            self._warn_once(f"max:{lease.id}", f"the lease on {lease.path} reaches its max "
                            f"TTL in {format_age(ttl)}; the credential stops working then "
                            "(raise the role's max_ttl)")
        return ttl

    def release(self) -> list[str]:
        with self._lock:
            token, child, accessor = self._lease_token, self._child, self._child_accessor
            leases = list(self._leases.values())
            self._lease_token, self._child, self._child_accessor = None, False, None
            self._leases = {}
        if self._api is None:
            return []
        deadline = Deadline(_RELEASE_SECONDS)
        if token is None:
            return self._revoke_login(self._api, deadline)
        if token is self._credential and token.owned:
            self._credential = None  # the login token is revoked with the leases
        if child or token.owned:
            warnings = self._revoke_token(self._api, token, accessor, leases, deadline)
        else:
            warnings = [w for lease in leases
                        for w in self._revoke_lease(self._api, token, lease, deadline)]
        return warnings + self._revoke_login(self._api, deadline)

    def _revoke_login(self, api: VaultApi, deadline: Deadline) -> list[str]:
        """A token keyrun logged in for (AppRole, userpass…) is not needed once the values
        are read: revoke it rather than leave it valid for its whole TTL."""
        login, self._credential = self._credential, None
        if login is None or not login.owned:
            return []
        try:
            api.client(login.token, deadline).auth.token.revoke_self()
        except (VaultHttpError, SourceError) as exc:
            return [f"could not revoke the token keyrun logged in with ({_reason(exc)}); "
                    "it stays valid until its TTL ends"]
        return []

    def _revoke_token(self, api: VaultApi, token: Credential, accessor: str | None,
                      leases: list[_Lease], deadline: Deadline) -> list[str]:
        try:
            api.client(token.token, deadline).auth.token.revoke_self()
            return self._await_revocation(api, leases, deadline)
        except (VaultHttpError, SourceError) as exc:
            first = _reason(exc)
        parent = self._credential
        if accessor and parent is not None:
            try:
                api.client(parent.token, deadline).auth.token.revoke_accessor(accessor)
                return []
            except (VaultHttpError, SourceError):
                pass
        paths = ", ".join(sorted({lease.path for lease in leases})) or "none"
        return [f"could not revoke the token holding this run's leases ({first}); the "
                f"credentials from {paths} stay valid until it expires (revoke them with: "
                "vault lease revoke -prefix PATH)"]

    def _await_revocation(self, api: VaultApi, leases: list[_Lease], deadline: Deadline
                          ) -> list[str]:
        """Vault revokes a token's leases in the background after revoke-self answers;
        wait (looking them up with the parent token) until each is gone, so that the
        credential is dead by the time keyrun exits."""
        parent = self._credential
        if parent is None:
            return []
        pending = [lease for lease in leases]
        lookup = api.client(parent.token, deadline)
        while pending and not deadline.expired():
            try:
                lookup.sys.read_lease(pending[0].id)
            except VaultHttpError as exc:
                if exc.status != 400:
                    return []  # not allowed to look: revoke-self was accepted, trust it
                pending.pop(0)  # "invalid lease": revoked
                continue
            except SourceError:
                return []
            time.sleep(0.05)
        paths = ", ".join(sorted({lease.path for lease in pending}))
        return [f"Vault had not yet revoked the leases on {paths} when keyrun exited; it "
                "revokes them in the background"] if pending else []

    def _revoke_lease(self, api: VaultApi, token: Credential, lease: _Lease,
                      deadline: Deadline) -> list[str]:
        try:
            api.client(token.token, deadline).sys.revoke_lease(lease.id)
            return []
        except (VaultHttpError, SourceError) as exc:
            return [f"could not revoke the lease on {lease.path} ({_reason(exc)}); it "
                    "stays valid until it expires (revoke it with: vault lease revoke "
                    "LEASE_ID, as a token allowed to)"]

    def _abandon_leases(self) -> None:
        """Revoke at once what this fetch leased when none of it reaches the command."""
        for warning in self.release():
            self.warn(warning)

    def _warn_once(self, tag: str, message: str) -> None:
        with self._lock:
            if tag in self._warned:
                return
            self._warned.add(tag)
        self.warn(message)

    # value-free

    def check(self, deadline: Deadline) -> Health:
        api, credential = self._connect(deadline)
        try:
            answer = api.client(credential.token, deadline).auth.token.lookup_self()
        except VaultHttpError as exc:
            hint = "log in again (vault login), or export a valid VAULT_TOKEN"
            if exc.status == 403:
                raise SourceError(self.name, denied("auth/token/lookup-self", credential),
                                  hint) from None
            raise SourceError(self.name, f"token lookup failed: {exc.detail}", hint) from None
        data = answer.get("data") or {}
        detail = f"{self._where(api)}: token from {credential.origin}; {_token_summary(data)}"
        warnings = list(_token_warnings(data))
        mount = self._describe_mount(api, credential, deadline)
        if mount:
            detail += f"; {mount}"
        if api.tls.skip_verify:
            raise SourceError(self.name, f"{api.tls.skip_variable} is true: the TLS certificate "
                              f"of {api.url} is not verified ({detail})",
                              "unset it and point VAULT_CACERT at the server's CA certificate")
        return Health(detail, tuple(f"{warning}" for warning in warnings))

    def _where(self, api: VaultApi) -> str:
        return api.url + (f" (namespace {api.namespace})" if api.namespace else "")

    def _describe_mount(self, api: VaultApi, credential: Credential,
                        deadline: Deadline) -> str | None:
        configured = self.render("mount").strip("/")
        if not configured:
            return None
        try:
            mount = self._mount(api, credential, configured, deadline)
        except VaultHttpError as exc:
            return f"{configured}/: {exc.detail}"
        kind = f"KV v{mount.version}" if mount.kv else f"a {mount.type} engine"
        return f"{mount.path} is {kind}"

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        api, credential = self._connect(deadline)
        wanted: dict[Location, list[Request]] = {}
        for request in requests:
            wanted.setdefault((self.logical_path(request), request.version), []).append(request)
        metas = self._in_parallel(lambda loc: self._meta(api, credential, loc, deadline),
                                  list(wanted), deadline)
        found: dict[str, Meta] = {}
        for location, group in wanted.items():
            for request in group:
                meta = metas[location]
                if meta.exists and not self.per_key:
                    meta = meta._replace(exists=None)  # the entry exists; the field may not
                found[request.key] = meta
        return found

    def _meta(self, api: VaultApi, credential: Credential, location: Location,
              deadline: Deadline) -> Meta:
        logical, version = location
        try:
            mount = self._mount(api, credential, logical, deadline)
        except VaultHttpError:
            return Meta(note=f"{logical}: not readable with this token")
        if not mount.kv:
            return Meta(note=f"dynamic: {mount.type} secrets are made for each run")
        if not mount.kv2:
            return Meta(note="KV v1 records no versions or change times")
        try:
            answer = api.client(credential.token, deadline).secrets.kv.v2.read_secret_metadata(
                mount.inner(logical), mount_point=mount.point)
        except VaultHttpError as exc:
            if exc.status == 404:
                return Meta(exists=False)
            return Meta(note=f"metadata of {logical} not readable: {exc.detail}")
        return _kv2_meta(answer.get("data") or {}, version)

    # writing

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        api, credential = self._connect(deadline)
        self._warn_insecure(api)
        logical = self.logical_path(request)
        try:
            mount = self._mount(api, credential, logical, deadline)
        except VaultHttpError as exc:
            raise SourceError(self.name, self._write_failure(exc, logical, logical,
                                                             credential)) from None
        if not mount.kv:
            raise SourceError(self.name, f"{mount.path} is a {mount.type} secrets engine, "
                              "not KV: keyrun set writes KV entries only",
                              "set the key in a KV source with --source NAME")
        path = self._api_path(mount, logical)
        vault = api.client(credential.token, deadline)
        data, version = self._current(vault, mount, path, logical, credential)
        field = self._write_field(request, data)
        data[field] = value.reveal()
        try:
            if mount.kv2:
                answer = vault.secrets.kv.v2.create_or_update_secret(
                    mount.inner(logical), data, cas=version, mount_point=mount.point)
            else:
                answer = vault.secrets.kv.v1.create_or_update_secret(
                    mount.inner(logical), data, method="POST", mount_point=mount.point)
        except VaultHttpError as exc:
            if exc.status == 400 and any("check-and-set" in e for e in exc.errors):
                raise SourceError(self.name, f"{logical} changed while keyrun set was writing "
                                  f"it (it is no longer version {version}); nothing was "
                                  "written", "run keyrun set again") from None
            raise SourceError(self.name, self._write_failure(exc, logical, path,
                                                             credential)) from None
        where = f"{logical}#{field}"
        written = (answer.get("data") or {}).get("version")
        return f"{where} (version {written})" if written else where

    def _write_field(self, request: Request, current: Mapping[str, Any]) -> str:
        """The field ``fetch`` would read the key from."""
        if not self.per_key:
            if request.field is not None:
                raise SourceError(self.name, f"{request.key} is read from field "
                                  f"{request.field!r} inside the value of {request.name}; "
                                  "keyrun set cannot rewrite part of a value",
                                  "write the whole value with vault kv patch")
            return request.name
        return request.field or self._default_field(current) or "value"

    def _current(self, vault: Any, mount: Mount, path: str, logical: str,
                 credential: Credential) -> tuple[dict[str, Any], int]:
        """The entry's fields now, and (KV v2) the version they are, for check-and-set."""
        try:
            answer = _kv_read(vault, mount, logical)
        except VaultHttpError as exc:
            if exc.status != 404:
                raise SourceError(self.name, self._write_failure(exc, logical, path,
                                                                 credential)) from None
            metadata = ((exc.body.get("data") or {}).get("metadata") or {})
            return {}, int(metadata.get("version") or 0)
        if not mount.kv2:
            return dict(answer.get("data") or {}), 0
        data = answer.get("data") or {}
        return dict(data.get("data") or {}), int((data.get("metadata") or {}).get("version") or 0)

    def _write_failure(self, exc: VaultHttpError, logical: str, path: str,
                       credential: Credential) -> str:
        if exc.status == 403:
            return (denied(path, credential).replace("read", "write", 1) +
                    f" — grant create and update on {path}")
        return f"writing {logical} failed: {exc.detail}"

    # plumbing

    def _in_parallel(self, work: Callable[[Location], T], targets: list[Location],
                     deadline: Deadline) -> dict[Location, T]:
        tasks = [functools.partial(work, target) for target in targets]
        return dict(zip(targets, self.runtime.parallel(deadline, tasks), strict=True))

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def denied(path: str, credential: Credential) -> str:
    """The one message for HTTP 403 (Vault answers 403 for a bad token too)."""
    return (f"token expired, revoked or not allowed to read {path} "
            f"(token from {credential.origin})")


def _mount(found: Mount | Problem) -> Mount:
    assert isinstance(found, Mount)
    return found


def _kv_read(vault: Any, mount: Mount, logical: str, version: str | None = None
             ) -> dict[str, Any]:
    """A KV entry through the hvac client ``vault``; a deleted KV v2 version raises (404)."""
    if mount.kv2:
        return dict(vault.secrets.kv.v2.read_secret_version(
            mount.inner(logical), version, mount_point=mount.point,
            raise_on_deleted_version=True))
    return dict(vault.secrets.kv.v1.read_secret(mount.inner(logical), mount_point=mount.point))


def _kv2_entry(answer: Mapping[str, Any]) -> Entry:
    data = answer.get("data") or {}
    metadata = data.get("metadata") or {}
    deletion = _time(metadata.get("deletion_time"))
    return Entry(data.get("data") or {}, version=str(metadata.get("version") or "") or None,
                 updated=_time(metadata.get("created_time")),
                 expires=deletion if deletion and deletion > datetime.now(UTC) else None)


def _kv2_meta(data: Mapping[str, Any], pinned: str | None) -> Meta:
    version = pinned or str(data.get("current_version") or "")
    info = (data.get("versions") or {}).get(version) or {}
    if not info:
        return Meta(exists=False, note=f"no version {version}" if pinned else None)
    deletion = _time(info.get("deletion_time"))
    now = datetime.now(UTC)
    custom = data.get("custom_metadata") or {}
    note = ", ".join(f"{k}={v}" for k, v in sorted(custom.items())) or None
    gone = info.get("destroyed") or (deletion is not None and deletion <= now)
    return Meta(exists=not gone, version=version, updated=_time(info.get("created_time")),
                expires=deletion if deletion and deletion > now else None,
                deleted=deletion if deletion and deletion <= now else None,
                note=f"custom metadata: {note}" if note else None)


def _not_found(logical: str, version: str | None, body: Mapping[str, Any]) -> str:
    metadata = (body.get("data") or {}).get("metadata") or {}
    number = version or metadata.get("version")
    if metadata.get("destroyed"):
        return f"version {number} of {logical} was destroyed"
    if metadata.get("deletion_time"):
        return (f"version {number} of {logical} was deleted "
                f"(restore it with: vault kv undelete -versions={number} {logical})")
    return f"no version {version} of {logical}" if version else f"no entry {logical}"


def _token_summary(data: Mapping[str, Any]) -> str:
    ttl = int(data.get("ttl") or 0)
    lifetime = "no expiry" if ttl == 0 else f"TTL {format_age(ttl)}"
    renewable = "renewable" if data.get("renewable") else "not renewable"
    policies = ", ".join(str(p) for p in data.get("policies") or []) or "none"
    return f"{lifetime}, {renewable}; policies: {policies}"


def _token_warnings(data: Mapping[str, Any]) -> list[str]:
    ttl = int(data.get("ttl") or 0)
    if 0 < ttl < 3600 and not data.get("renewable"):
        return [f"the token expires in {format_age(ttl)} and is not renewable: log in again "
                "soon"]
    return []


def _time(text: object) -> datetime | None:
    if not text or not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.year > 1 else None


def _duration(settings: Mapping[str, Any], option: str, where: str) -> float:
    seconds = parse_duration(str(settings[option]))
    if seconds is None:
        raise ConfigError(f"{where}: {option} = {settings[option]!r} is not a duration",
                          "write it like \"30s\", \"5m\" or \"12h\"")
    return seconds


def _reason(exc: Exception) -> str:
    if isinstance(exc, VaultHttpError):
        return exc.detail
    if isinstance(exc, SourceError):
        return exc.reason
    return str(exc)
