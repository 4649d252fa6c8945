"""Accepted findings: fingerprints that later scans skip (``keyrun scan --baseline FILE``,
keyrun.toml's ``[scan] accepted`` and ``[scan] baseline``).

A fingerprint is a hash of the rule, the path and the secret, never the secret: PBKDF2 over
the secret's SHA-256, salted with the rule and the path and stretched, so a short password
found in a URL cannot be confirmed from a committed baseline by a quick guess. The line is not
part of it, so a finding that moves within its file stays accepted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from keyrun.errors import ConfigError, KeyrunError

FORMAT = 1
ROUNDS = 2_000


def fingerprint(rule: str, path: str, digest: bytes) -> str:
    """The fingerprint of a finding of ``rule`` in ``path`` whose secret hashes to ``digest``
    (its SHA-256)."""
    from hashlib import pbkdf2_hmac

    salt = f"keyrun-scan/{FORMAT}\0{rule}\0{path}".encode("utf-8", "surrogateescape")
    return pbkdf2_hmac("sha256", digest, salt, ROUNDS)[:16].hex()


def read_baseline(path: Path) -> list[dict[str, Any]]:
    """The entries of a baseline file (``fingerprint``, ``rule``, ``path``); an unreadable
    or malformed file is an error naming it."""
    hint = "write it again with: keyrun scan --baseline FILE --update-baseline"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyrunError(f"{path}: cannot read the baseline ({exc.strerror})",
                          "check the path; keyrun scan --baseline FILE creates it") from None
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("not a keyrun baseline (invalid JSON)", hint, path=str(path)) from None
    entries = data.get("accepted") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("keyrun_baseline") != FORMAT
            or not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("fingerprint"), str) for e in entries)):
        raise ConfigError("not a keyrun baseline (expected keyrun_baseline = 1 and a list of "
                          "accepted fingerprints)", hint, path=str(path))
    return entries


def write_baseline(path: Path, entries: Iterable[dict[str, Any]]) -> int:
    """Write ``entries`` (fingerprint, rule, path: for review; never a secret or a preview)
    to ``path``, replacing it whole; returns how many it holds."""
    unique = {entry["fingerprint"]: entry for entry in entries}
    ordered = sorted(unique.values(), key=lambda e: (str(e.get("path")), str(e.get("rule")),
                                                      e["fingerprint"]))
    text = json.dumps({"keyrun_baseline": FORMAT, "accepted": ordered}, indent=2) + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyrunError(f"{path}: cannot write the baseline ({exc.strerror})",
                          "choose a writable path") from None
    return len(ordered)
