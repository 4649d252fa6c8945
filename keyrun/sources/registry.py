"""Finding source classes by type name.

Built-ins are registered under the ``keyrun.sources`` entry-point group like any
third-party source; this table mirrors those entries so that a run resolves a built-in
without scanning every installed distribution (``tests/test_registry.py`` keeps the two
equal). Unknown types are looked up through the entry points.

Whether a type is usable here is known without importing its SDK: a built-in's extra
installs the modules of ``EXTRA_MODULES``; a third-party source class may declare the
modules it needs (``requires = ("some_sdk",)``), else its distribution's metadata says
what the extra it names (``extra = "sdk"``) installs.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from keyrun.errors import ConfigError
from keyrun.sources import Source

BUILTIN: dict[str, str] = {
    "dotenv": "keyrun.sources.dotenv:DotenvSource",
    "keyring": "keyrun.sources.keyring:KeyringSource",
    "aws-secrets-manager": "keyrun.sources.aws:AwsSecretsManagerSource",
    "aws-ssm": "keyrun.sources.aws_ssm:AwsSsmSource",
    "vault": "keyrun.sources.vault:VaultSource",
    "gcp-secret-manager": "keyrun.sources.gcp:GcpSecretManagerSource",
    "azure-key-vault": "keyrun.sources.azure:AzureKeyVaultSource",
    "doppler": "keyrun.sources.doppler:DopplerSource",
}

GROUP = "keyrun.sources"

# The modules each extra installs: a source type is usable when they can be imported.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "aws": ("boto3",),
    "gcp": ("google.cloud.secretmanager",),
    "vault": ("hvac",),
    "azure": ("azure.keyvault.secrets", "azure.identity"),
    "doppler": ("httpx",),
}


class SourceType(NamedTuple):
    name: str
    target: str
    builtin: bool
    distribution: str | None = None  # the package providing a third-party type


def _import(target: str) -> type[Source]:
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise TypeError(f"{target} is not a keyrun Source")
    return cls


def installed_types() -> list[SourceType]:
    """Every source type: built-ins, then third-party entry points."""
    from importlib.metadata import entry_points

    found = {name: SourceType(name, target, True) for name, target in BUILTIN.items()}
    for entry in entry_points(group=GROUP):
        if entry.name not in found:
            dist = entry.dist.name if entry.dist is not None else None
            found[entry.name] = SourceType(entry.name, entry.value, False, dist)
    return list(found.values())


def missing_modules(extra: str | None) -> list[str]:
    """The SDK modules of a built-in ``extra`` that cannot be imported here."""
    return _unimportable(EXTRA_MODULES.get(extra or "", ()))


def _unimportable(modules: Sequence[str]) -> list[str]:
    """Those of ``modules`` that cannot be imported here (found without importing them)."""
    from importlib.util import find_spec

    missing = []
    for module in modules:
        try:
            if find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):
            missing.append(module)
    return missing


def unusable_reason(source_type: SourceType, cls: type[Source]) -> str | None:
    """Why this installed type cannot work here (with the command that fixes it), or None."""
    missing = _missing_requirements(source_type, cls)
    if missing:
        command = install_command(source_type.name, cls.extra)
        if command is None:
            return f"missing {', '.join(missing)}: install the packages that provide them"
        return f"{command} (missing {', '.join(missing)})"
    probe = _PROBES.get(source_type.name) if source_type.builtin else None
    return probe() if probe is not None else None


def install_hint(type_name: str, extra: str | None, module: str) -> str:
    """The hint of a missing SDK: the exact pip command where one is known."""
    command = install_command(type_name, extra)
    if command is not None:
        return f"install it with: {command}"
    return f"install the package that provides the Python module {module!r}"


def install_command(type_name: str, extra: str | None) -> str | None:
    """The pip command that installs what a source type needs: ``keyrun[extra]`` for a
    built-in, the providing distribution with its extra for a third-party type (None
    when that distribution declares no such extra)."""
    if type_name in BUILTIN:
        return f"pip install 'keyrun[{extra}]'" if extra else None
    distribution = next((t.distribution for t in installed_types() if t.name == type_name),
                        None)
    if distribution is None or not extra or _normal(extra) not in map(_normal,
                                                                        _extras(distribution)):
        return None
    return f"pip install '{distribution}[{extra}]'"


def _missing_requirements(source_type: SourceType, cls: type[Source]) -> list[str]:
    if source_type.builtin:
        return missing_modules(cls.extra)
    declared = getattr(cls, "requires", None)
    if declared is not None:
        return _unimportable(tuple(declared))
    if cls.extra and source_type.distribution:
        return [name for name in extra_requirements(source_type.distribution, cls.extra)
                if not _installed(name)]
    return []


def extra_requirements(distribution: str, extra: str) -> list[str]:
    """The distributions ``pip install '<distribution>[<extra>]'`` adds (names only; a
    marker other than the extra is not evaluated)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires(distribution) or []
    except PackageNotFoundError:
        return []
    names = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())
        extras = re.findall(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if name and _normal(extra) in map(_normal, extras):
            names.append(name.group())
    return names


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(distribution: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


def _extras(distribution: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return list(metadata(distribution).get_all("Provides-Extra") or [])
    except PackageNotFoundError:
        return []


def _sdk_hint(type_name: str, module: str) -> str:
    """A third-party module that imports its SDK at the top: the extra is unknown until
    the class loads, so name the one its distribution offers, if it offers one."""
    distribution = next((t.distribution for t in installed_types() if t.name == type_name),
                        None)
    extras = _extras(distribution) if distribution else []
    if distribution and len(extras) == 1:
        return f"install it with: pip install '{distribution}[{extras[0]}]'"
    return f"install the package that provides the Python module {module!r}"


def _keyring_problem() -> str | None:
    """The keyring library imports fine with no keychain behind it: its fail and null
    backends, or a plaintext file, would make every keyring source fail or be unsafe."""
    import keyring

    from keyrun.sources.keyring import _name, _unsafe

    backend = keyring.get_keyring()
    problem = _unsafe(backend)
    if problem is None:
        return None
    return (f"the keyring backend {_name(backend)} {problem} (`python -m keyring diagnose` "
            "shows what keyring sees; a Secret Service daemon, the macOS Keychain or the "
            "Windows Credential Locker is needed)")


_PROBES: dict[str, Callable[[], str | None]] = {"keyring": _keyring_problem}


def source_class(type_name: str, *, where: str) -> type[Source]:
    target = BUILTIN.get(type_name)
    if target is None:
        for candidate in installed_types():
            if candidate.name == type_name:
                target = candidate.target
                break
    if target is None:
        valid = ", ".join(t.name for t in installed_types())
        raise ConfigError(
            f"{where}: unknown source type {type_name!r}",
            f"valid types: {valid} (third-party sources register under the "
            f"'{GROUP}' entry-point group)",
        )
    try:
        return _import(target)
    except ModuleNotFoundError as exc:
        own = target.partition(":")[0]
        if exc.name is None or own == exc.name or own.startswith(f"{exc.name}."):
            raise ConfigError(f"{where}: source type {type_name!r} cannot be loaded from "
                              f"{target} ({exc})", "reinstall the package that provides it",
                              ) from None
        raise ConfigError(
            f"{where}: source type {type_name!r} needs the Python module {exc.name!r}, "
            "which is not installed", _sdk_hint(type_name, exc.name)) from None
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"{where}: source type {type_name!r} cannot be loaded from {target} ({exc})",
            "reinstall the package that provides it",
        ) from None
