"""One error hierarchy; ``keyrun.cli`` maps each class to its documented exit status."""

from __future__ import annotations

# Exit statuses, after GNU env(1) and timeout(1).
EXIT_USAGE = 2
EXIT_KEYRUN_FAILED = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


class KeyrunError(Exception):
    """An expected failure: a message naming the thing, and a hint naming the next step."""

    exit_code = EXIT_KEYRUN_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(KeyrunError):
    exit_code = EXIT_USAGE


class ConfigError(KeyrunError):
    """keyrun.toml, a .env file or an environment variable that configures keyrun is invalid."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.path = path
        self.line = line


class SourceError(KeyrunError):
    """A whole source failed: unreachable, denied, timed out, misconfigured, SDK missing."""

    def __init__(self, source: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{source}: {message}", hint)
        self.source = source
        self.reason = message


class MissingSdkError(SourceError):
    """An optional SDK is not installed: the hint is the exact pip command, ``keyrun[extra]``
    for a built-in source, the providing distribution's own extra for a third-party one
    (``keyrun.sources.installed.install_hint``)."""

    def __init__(self, source: str, type_name: str, module: str, hint: str) -> None:
        super().__init__(
            source,
            f"source type {type_name!r} needs the Python package {module!r}, "
            "which is not installed",
            hint,
        )


class ResolutionError(KeyrunError):
    """Required keys are missing or could not be read; the command is not started."""


class LaunchError(KeyrunError):
    """The command could not be started."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class Terminated(BaseException):
    """keyrun was told to stop (SIGTERM, SIGHUP before the command started; SIGPIPE when
    the reader of its output is gone): the boundary in ``keyrun.cli`` dies of the signal."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number
