"""Building the command's environment: a pure function of its inputs (SPEC §5)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from keyrun.errors import ResolutionError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: "$" would let a final newline in

# One NAME=value string larger than this makes execve fail with E2BIG (MAX_ARG_STRLEN).
MAX_ASSIGNMENT_BYTES = 131072

# Names that change how the command or its interpreter starts: a secret store must not
# be able to set them unless the environment says so (allow_reserved).
RESERVED = frozenset({
    "PATH", "HOME", "SHELL", "USER", "LOGNAME", "PWD", "OLDPWD", "IFS", "CDPATH",
    "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "BASH_ENV", "ENV", "SHELLOPTS",
    "BASHOPTS", "GLOBIGNORE", "TMPDIR", "TERM",
    "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONINSPECT", "PYTHONUSERBASE",
    "NODE_OPTIONS", "NODE_PATH", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT",
    "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
    "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GCONV_PATH", "HOSTALIASES", "RESOLV_HOST_CONF",
    "KEYRUN_PROFILE", "KEYRUN_CONFIG", "KEYRUN_ENV", "KEYRUN_ACCESS_LOG",
})
RESERVED_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_")

# What --clean-env keeps from the inherited environment.
CLEAN_ENV_KEEP = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "COLORTERM",
    "TZ", "TMPDIR", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "NO_COLOR",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
})
CLEAN_ENV_PREFIXES = ("LC_",)


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIXES)


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


def check_exec_values(keys: Mapping[str, str]) -> None:
    """Refuse, by name, what execve would reject or mangle (SPEC §5 "Valid before exec")."""
    problems: list[str] = []
    for name, value in keys.items():
        if not NAME.match(name):
            problems.append(f"{name!r} is not a valid environment variable name")
            continue
        if "\0" in value:
            problems.append(f"{name} holds a NUL character, which no environment can carry")
            continue
        try:
            size = len(name.encode()) + 1 + len(value.encode("utf-8")) + 1
        except UnicodeEncodeError:
            problems.append(f"{name} is not valid text (it holds an unpaired surrogate)")
            continue
        if size > MAX_ASSIGNMENT_BYTES:
            problems.append(f"{name} is {size} bytes; the kernel refuses one variable over "
                            f"{MAX_ASSIGNMENT_BYTES} bytes (E2BIG)")
    if problems:
        raise ResolutionError(
            "cannot pass these keys to the command: " + "; ".join(problems),
            "store such a value in a file the command reads, not in its environment",
        )


# Key names that say "credential", and a URL with a password in it.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|PWD|CREDENTIAL|AUTH|PRIVATE|DSN|COOKIE|"
                          r"SESSION|SIGNING|SALT|CERT|WEBHOOK|(?:^|_)PW(?:_|$)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]+@")
_TOKEN_PART = re.compile(r"[A-Za-z0-9+/=~]{12,}")  # a run between separators (- _ . : …)


def looks_secret(name: str, value: str, minimum: int = 6) -> bool:
    """Whether the argv guard watches this key: its name says credential, or its value
    looks like one (a password in a URL, or a random-looking run of 12 characters or
    more, alone or inside a URL). Plain settings (``APP_ENV=production``,
    ``DB_HOST=db-01.example.com``, ``MODEL=gpt-4o-2024-08-06``) may appear in argv."""
    if len(value) < minimum:
        return False
    if _SECRET_NAME.search(name) or _URL_PASSWORD.search(value):
        return True
    return any(_random_looking(part) for part in _TOKEN_PART.findall(value))


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
    """Names of secret-looking keys whose value appears literally in the command's
    arguments."""
    args = list(argv)
    return [name for name, value in keys.items()  # cheap test first: most values are not there
            if any(value in arg for arg in args) and looks_secret(name, value, minimum)]
