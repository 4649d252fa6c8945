"""Which source types are installed, and the command that installs what one needs.

Built-ins are registered under the ``keyrun.sources`` entry-point group like any
third-party source; ``BUILTIN`` mirrors those entries so that a run resolves a built-in
without scanning every installed distribution (``tests/test_registry.py`` keeps the two
equal). Nothing here imports a source: a missing SDK's error gets its hint from here
(``MissingSdkError``) without pulling in the registry.
"""

# Annotations are evaluated (no `from __future__ import annotations`): under it each
# NamedTuple field's string is compiled at every start (benchmarks/RESULTS.md, startup).

from typing import NamedTuple

from keyrun.installer import add_extra_command, add_package_command, normal_name

BUILTIN: dict[str, str] = {
    "dotenv": "keyrun.sources.dotenv:DotenvSource",
    "keyring": "keyrun.sources.keyring:KeyringSource",
    "aws-secrets-manager": "keyrun.sources.aws:AwsSecretsManagerSource",
    "aws-ssm": "keyrun.sources.aws_ssm:AwsSsmSource",
    "vault": "keyrun.sources.vault:VaultSource",
    "gcp-secret-manager": "keyrun.sources.gcp:GcpSecretManagerSource",
    "azure-key-vault": "keyrun.sources.azure:AzureKeyVaultSource",
    "doppler": "keyrun.sources.doppler:DopplerSource",
    "environ": "keyrun.sources.environ:EnvironSource",
}

GROUP = "keyrun.sources"


class SourceType(NamedTuple):
    name: str
    target: str
    builtin: bool
    distribution: str | None = None  # the package providing a third-party type


def installed_types() -> list[SourceType]:
    """Every source type: built-ins, then third-party entry points."""
    from importlib.metadata import entry_points

    found = {name: SourceType(name, target, True) for name, target in BUILTIN.items()}
    for entry in entry_points(group=GROUP):
        if entry.name not in found:
            dist = entry.dist.name if entry.dist is not None else None
            found[entry.name] = SourceType(entry.name, entry.value, False, dist)
    return list(found.values())


def install_hint(type_name: str, extra: str | None, module: str) -> str:
    """The hint of a missing SDK: the exact pip command where one is known."""
    command = install_command(type_name, extra)
    if command is not None:
        return f"install it with: {command}"
    return f"install the package that provides the Python module {module!r}"


def install_command(type_name: str, extra: str | None) -> str | None:
    """The command that installs what a source type needs, for the installer that
    installed keyrun (pip, pipx, uv, uv tool, a clone: ``keyrun.installer``):
    ``keyrun[extra]`` for a built-in, the providing distribution with its extra for a
    third-party type (None when that distribution declares no such extra)."""
    if type_name in BUILTIN:
        return add_extra_command(extra) if extra else None
    distribution = _distribution(type_name)
    if distribution is None or not extra or normal_name(extra) not in map(normal_name,
                                                                        _extras(distribution)):
        return None
    return add_package_command(f"{distribution}[{extra}]")


def sdk_hint(type_name: str, module: str) -> str:
    """A third-party module that imports its SDK at the top: the extra is unknown until
    the class loads, so name the one its distribution offers, if it offers one."""
    distribution = _distribution(type_name)
    extras = _extras(distribution) if distribution else []
    if distribution and len(extras) == 1:
        return f"install it with: {add_package_command(f'{distribution}[{extras[0]}]')}"
    return f"install the package that provides the Python module {module!r}"


def _distribution(type_name: str) -> str | None:
    return next((t.distribution for t in installed_types() if t.name == type_name), None)


def _extras(distribution: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return list(metadata(distribution).get_all("Provides-Extra") or [])
    except PackageNotFoundError:
        return []
