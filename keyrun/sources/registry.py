"""Finding source classes by type name, and whether each can work here.

A built-in is found in ``BUILTIN`` (``keyrun.sources.installed``) without scanning every
installed distribution; unknown types are looked up through the entry points.

Whether a type is usable here is known without importing its SDK: a built-in's extra
installs the modules of ``EXTRA_MODULES``; a third-party source class may declare the
modules it needs (``requires = ("some_sdk",)``), else its distribution's metadata says
what the extra it names (``extra = "sdk"``) installs. Beyond its SDK, a source says
itself whether it can run here (``Source.unusable_reason``: the keyring source without
a keychain).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from keyrun.errors import ConfigError
from keyrun.installer import extra_requirements
from keyrun.sources import Source
from keyrun.sources.installed import (
    BUILTIN,
    GROUP,
    SourceType,
    install_command,
    installed_types,
    sdk_hint,
)

__all__ = ["BUILTIN", "EXTRA_MODULES", "SourceType", "installed_types", "missing_modules",
           "source_class", "unusable_reason"]

# The modules each extra installs: a source type is usable when they can be imported.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "aws": ("boto3",),
    "gcp": ("google.cloud.secretmanager",),
    "vault": ("hvac",),
    "azure": ("azure.keyvault.secrets", "azure.identity"),
    "doppler": ("httpx",),
}


def _import(target: str) -> type[Source]:
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise TypeError(f"{target} is not a keyrun Source")
    return cls


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
    return cls.unusable_reason()


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


def _installed(distribution: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


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
            "which is not installed", sdk_hint(type_name, exc.name)) from None
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"{where}: source type {type_name!r} cannot be loaded from {target} ({exc})",
            "reinstall the package that provides it",
        ) from None
