"""Finding source classes by type name.

Built-ins are registered under the ``keyrun.sources`` entry-point group like any
third-party source; this table mirrors those entries so that a run resolves a built-in
without scanning every installed distribution (``tests/test_registry.py`` keeps the two
equal). Unknown types are looked up through the entry points.
"""

from __future__ import annotations

import importlib
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
    """The SDK modules of ``extra`` that cannot be imported here (without importing them)."""
    from importlib.util import find_spec

    missing = []
    for module in EXTRA_MODULES.get(extra or "", ()):
        try:
            if find_spec(module) is None:
                missing.append(module)
        except ModuleNotFoundError:
            missing.append(module)
    return missing


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
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"{where}: source type {type_name!r} cannot be loaded from {target} ({exc})",
            "reinstall the package that provides it",
        ) from None
