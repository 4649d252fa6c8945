"""Building the command's environment: a pure function of its inputs (SPEC §5)."""

# Annotations are evaluated (no `from __future__ import annotations`): under it each
# NamedTuple field's string is compiled at every start (benchmarks/RESULTS.md, startup).

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: "$" would let a final newline in

# One NAME=value string larger than this makes execve fail with E2BIG (MAX_ARG_STRLEN).
MAX_ASSIGNMENT_BYTES = 131072

# Names that make a common program load code, read another configuration or send its
# traffic elsewhere: a secret store (or a checkout's .env) must not be able to set them
# unless the environment says so (allow_reserved). Compared in upper case (curl reads
# http_proxy; Windows folds case).
RESERVED = frozenset({
    # shells and the session
    "PATH", "HOME", "SHELL", "USER", "LOGNAME", "PWD", "OLDPWD", "IFS", "CDPATH",
    "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "BASH_ENV", "ENV", "SHELLOPTS",
    "BASHOPTS", "GLOBIGNORE", "TMPDIR", "TERM", "TERMINFO", "ZDOTDIR", "INPUTRC",
    "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_STATE_HOME",
    # the dynamic loader and the C library
    "GCONV_PATH", "GLIBC_TUNABLES", "NLSPATH", "LOCPATH", "HOSTALIASES",
    "RESOLV_HOST_CONF", "LOCALDOMAIN", "RES_OPTIONS",
    # programs a tool starts for you: pagers, editors, browsers, password prompts
    "PAGER", "MANPAGER", "LESS", "LESSOPEN", "LESSCLOSE", "LESSKEY", "LESSKEYIN",
    "EDITOR", "VISUAL", "SUDO_EDITOR", "BROWSER", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE",
    "SUDO_ASKPASS", "SSH_AUTH_SOCK",
    # git (GIT_CONFIG* and GIT_SSH* are prefixes below)
    "GIT_ASKPASS", "GIT_EXEC_PATH", "GIT_PROXY_COMMAND", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR",
    "GIT_PAGER", "GIT_EXTERNAL_DIFF", "GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR",
    "GIT_TEMPLATE_DIR", "GIT_ALLOW_PROTOCOL", "GIT_SSL_NO_VERIFY", "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    # interpreters and runtimes
    "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONINSPECT", "PYTHONUSERBASE",
    "PYTHONWARNINGS", "PYTHONBREAKPOINT", "PYTHONPYCACHEPREFIX", "PYTHONPLATLIBDIR",
    "PYTHONHTTPSVERIFY",
    "NODE_OPTIONS", "NODE_PATH", "NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED",
    "PERL5LIB", "PERL5OPT", "PERLLIB", "PERL5DB", "RUBYLIB", "RUBYOPT", "GEM_HOME", "GEM_PATH",
    "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "JAVA_HOME",
    "MAVEN_OPTS", "GRADLE_OPTS",
    "GOFLAGS", "GOPROXY", "GOSUMDB", "GONOSUMDB", "GONOSUMCHECK", "GOINSECURE", "GOPRIVATE",
    "GONOPROXY", "GOTOOLCHAIN", "GOROOT", "GOENV",
    "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTC", "RUSTDOC", "RUSTFLAGS",
    "RUSTDOCFLAGS", "CARGO_HOME", "CARGO_BUILD_RUSTC", "CARGO_BUILD_RUSTC_WRAPPER",
    "DOTNET_STARTUP_HOOKS", "DOTNET_ADDITIONAL_DEPS", "CORECLR_PROFILER",
    "CORECLR_PROFILER_PATH", "CORECLR_ENABLE_PROFILING", "COR_PROFILER", "COR_PROFILER_PATH",
    "COR_ENABLE_PROFILING",
    # package indexes: where installers download code from
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST",
    "PIP_CONFIG_FILE", "PIP_CERT", "UV_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX", "UV_FIND_LINKS",
    # TLS: which certificates are trusted, whether they are checked, where keys are logged
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "SSLKEYLOGFILE", "CURL_HOME", "WGETRC",
    # where clients find their configuration, credentials and servers
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "DOCKER_HOST", "DOCKER_CONFIG",
    "VAULT_ADDR", "VAULT_AGENT_ADDR", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_SKIP_VERIFY",
    "BAO_ADDR", "BAO_AGENT_ADDR", "BAO_CACERT", "BAO_CAPATH", "BAO_SKIP_VERIFY",
    "DOPPLER_API_HOST",
})
RESERVED_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "GIT_CONFIG", "GIT_SSH", "NPM_CONFIG_",
                     "KEYRUN_")
RESERVED_SUFFIXES = ("_PROXY",)  # HTTP_PROXY, https_proxy, ALL_PROXY, NO_PROXY …

# What --clean-env keeps from the inherited environment.
CLEAN_ENV_KEEP = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "COLORTERM",
    "TZ", "TMPDIR", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "NO_COLOR",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
})
CLEAN_ENV_PREFIXES = ("LC_",)


def is_reserved(name: str) -> bool:
    upper = name.upper()
    return (upper in RESERVED or upper.startswith(RESERVED_PREFIXES)
            or upper.endswith(RESERVED_SUFFIXES))


class ChildEnvironment(NamedTuple):
    values: dict[str, str]
    replaced: tuple[str, ...]  # inherited variables the profile overrode
    preserved: tuple[str, ...]  # profile keys left out because --preserve-env kept the parent's
    removed: tuple[str, ...]  # tokens taken out of the inherited environment


def build_environment(
    inherited: Mapping[str, str],
    keys: Mapping[str, str],
    *,
    profile_label: str,
    preserve_env: bool = False,
    clean_env: bool = False,
    strip: Iterable[str] = (),
) -> ChildEnvironment:
    """Inherited environment + resolved keys + flags → the command's environment.

    Profile values override inherited ones (as ``doppler run`` and ``chamber exec``
    do); ``preserve_env`` lets the inherited value win; ``clean_env`` starts from an
    allow-list. Tokens named in ``strip`` are removed (SPEC §5 "Tokens stay with keyrun").
    """
    if clean_env:
        base = {k: v for k, v in inherited.items()
                if k in CLEAN_ENV_KEEP or k.startswith(CLEAN_ENV_PREFIXES)}
    else:
        base = dict(inherited)
    removed = tuple(name for name in strip if name in base and name not in keys)
    for name in removed:
        del base[name]
    replaced: list[str] = []
    preserved: list[str] = []
    for name, value in keys.items():
        if name in base:
            if preserve_env and name not in strip:  # keyrun's own token never wins
                preserved.append(name)
                continue
            if base[name] != value:
                replaced.append(name)
        base[name] = value
    base["KEYRUN_PROFILE"] = profile_label
    return ChildEnvironment(base, tuple(replaced), tuple(preserved), removed)


class Unfit(NamedTuple):
    """A key execve would reject or mangle; ``as_file``: a file would carry it."""

    key: str
    message: str
    as_file: bool = False


def exec_value_problems(keys: Mapping[str, str]) -> list[Unfit]:
    """What execve would reject or mangle, a problem per key (SPEC §5 "Valid before exec";
    ``keyfiles.check_values`` refuses them, ``doctor`` reports them)."""
    problems: list[Unfit] = []
    for name, value in keys.items():
        if not NAME.match(name):
            problems.append(Unfit(name, f"{name!r} is not a valid environment variable name"))
            continue
        if "\0" in value:
            problems.append(Unfit(
                name, f"{name} holds a NUL character, which no environment can carry", True))
            continue
        try:
            size = len(name.encode()) + 1 + len(value.encode("utf-8")) + 1
        except UnicodeEncodeError:
            problems.append(Unfit(
                name, f"{name} is not valid text (it holds an unpaired surrogate)"))
            continue
        if size > MAX_ASSIGNMENT_BYTES:
            problems.append(Unfit(name, f"{name} is {size} bytes; the kernel refuses one "
                                  f"variable over {MAX_ASSIGNMENT_BYTES} bytes (E2BIG)", True))
    return problems


def unfit_hint(problems: Sequence[Unfit]) -> str:
    as_file = [problem.key for problem in problems if problem.as_file]
    if as_file:
        return (f'give it to the command as a file instead: {as_file[0]} = {{ as = "file" }} '
                "in keyrun.toml (a file holds NUL bytes and any size)")
    return "rename the key, or store the value as UTF-8 text"


# Key names that say "credential".
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|PWD|CREDENTIAL|AUTH|PRIVATE|DSN|COOKIE|"
                          r"SESSION|SIGNING|SALT|CERT|WEBHOOK|(?:^|_)PW(?:_|$)", re.IGNORECASE)
# Values the guard never watches, whatever the key's name: a dictionary-like word (postgres,
# github, Admin2024) and a file path (a key file's, a socket's).
_WORD = re.compile(r"[A-Za-z]{1,16}[0-9]{0,4}\Z")
_PATH = re.compile(r"(?:~|\.{1,2})?/\S*\Z|[A-Za-z]:\\\S*\Z")
_TOKEN_PART = re.compile(r"[A-Za-z0-9+/=~]{12,}")  # a run between separators (- _ . : …)
_URL_PART = re.compile(r"[A-Za-z0-9+~]{12,}")  # a run between a URL's separators (/ ? & = …)


def looks_secret(name: str, value: str, minimum: int = 6) -> bool:
    """Whether the argv guard watches this key. Never a short value, a dictionary-like word
    or a path; a URL when it holds a password (not a word) or a generated-looking run in
    its path or query (a webhook's, ``?token=…``), not for its host or its key's name;
    anything else when its key's name says credential or it holds a generated-looking run
    of 12 characters or more. Plain settings (``APP_ENV=production``,
    ``DB_HOST=db-01.example.com``, ``MODEL=gpt-4o-2024-08-06``) may appear in argv."""
    if len(value) < minimum or _WORD.match(value) or _PATH.match(value):
        return False
    if "://" in value:
        return _url_holds_secret(value, minimum)
    if _SECRET_NAME.search(name):
        return True
    return any(_random_looking(part) for part in _TOKEN_PART.findall(value))


def _url_holds_secret(value: str, minimum: int) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:  # not a URL after all (a bad port, a bracket)
        return any(_random_looking(part) for part in _TOKEN_PART.findall(value))
    if password and len(password) >= minimum and not _WORD.match(password):
        return True
    return any(_random_looking(part) for part in _URL_PART.findall(
        f"{parts.path}?{parts.query}#{parts.fragment}"))


def _random_looking(text: str) -> bool:
    """Letters and digits interleaved the way generated tokens are (at least three
    changes between a letter and a digit), or a long run of mixed-case characters as
    varied as base64; not a word with a year (``production2024``)."""
    import itertools
    import math
    from collections import Counter

    kinds = [c.isdigit() for c in text if c.isalnum()]
    if sum(a != b for a, b in itertools.pairwise(kinds)) >= 3:
        return True
    if len(text) < 24 or text.lower() == text or text.upper() == text:
        return False
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values()) >= 4.0


def secrets_in_argv(argv: Iterable[str], keys: Mapping[str, str], minimum: int = 6) -> list[str]:
    """Names of watched keys (``looks_secret``) whose value is in the command's arguments:
    an argument is, or contains, the whole value in any letter case, or its base64 (a
    ``Basic`` credential's too), base64url, hex or URL encoding; also split across adjacent
    arguments (the shell split an unquoted ``$VALUE`` at its blanks, or two were written
    one after the other)."""
    args = list(argv)
    texts = [arg.casefold() for arg in args] + [" ".join(args).casefold(), "".join(args).casefold()]
    decoded = _decoded(args)
    found = []
    for name, value in keys.items():
        if not value:
            continue
        folded = " ".join(value.split()).casefold() if value.strip() else value
        raw = value.encode("utf-8", "surrogateescape")
        present = (any(value.casefold() in text or folded in text for text in texts)
                   or any(raw in blob for blob in decoded))
        if present and looks_secret(name, value, minimum):
            found.append(name)
    return found


def value_in_program(program: str, keys: Mapping[str, str]) -> str | None:
    """The key whose value the command's name holds (``keyrun -- $TOKEN``), or None: such
    a name is neither logged nor printed (SPEC §5)."""
    folded = program.casefold()
    for name, value in keys.items():
        if len(value) >= 6 and value.casefold() in folded:
            return name
    return next(iter(secrets_in_argv([program], keys)), None)


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{12,}")


def _decoded(args: list[str]) -> list[bytes]:
    """What the arguments say once their URL encoding, base64 and hex are decoded (a value
    can only hide in runs of those alphabets)."""
    import binascii  # base64.b64decode is this, behind 1 ms of importing base64
    from urllib.parse import unquote_to_bytes

    joined = "".join(args)
    blobs = [unquote_to_bytes(text) for text in (*args, joined) if "%" in text]
    for text in (*args, joined):
        for run in _BASE64_RUN.findall(text):
            standard = run.replace("-", "+").replace("_", "/")
            for offset in range(4):
                part = standard[offset:]
                part = part[:-1] if len(part) % 4 == 1 else part + "=" * (-len(part) % 4)
                with contextlib.suppress(binascii.Error, ValueError):
                    blobs.append(binascii.a2b_base64(part))
        for run in _HEX_RUN.findall(text):
            for offset in (0, 1):
                part = run[offset:]
                blobs.append(bytes.fromhex(part[: len(part) - len(part) % 2]))
    return blobs
