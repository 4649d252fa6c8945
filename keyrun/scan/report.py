"""Renderings of scan findings: text lines, JSON (SPEC §4a) and SARIF 2.1.0 for code scanning.

Only previews are ever rendered; a finding holds no full secret to print.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from keyrun import __version__
from keyrun.scan.rules import ruleset

if TYPE_CHECKING:
    from keyrun.scan import Finding

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/keyrun/keyrun"


def render_text(findings: Sequence[Finding]) -> str:
    """One line per finding: ``path:line rule preview``, the profile key in brackets when
    the secret is one of its values, the commit id first (``commit:path:line``) for history."""
    return "".join(f"{text_line(finding)}\n" for finding in findings)


def text_line(finding: Finding) -> str:
    where = f"{finding.path}:{finding.line}"
    if finding.commit:
        where = f"{finding.commit}:{where}"
    key = f" [{finding.key}]" if finding.key else ""
    return f"{where} {finding.rule} {finding.preview}{key}"


def render_json(findings: Sequence[Finding]) -> str:
    """``{"findings": [{"path", "line", "rule", "key", "commit", "preview"}]}``."""
    return json.dumps({"findings": [finding.as_json() for finding in findings]}, indent=2,
                      ensure_ascii=False) + "\n"


def render_sarif(findings: Sequence[Finding]) -> str:
    """A SARIF 2.1.0 log with one run, ready for GitHub code scanning's upload-sarif."""
    titles = ruleset().titles()
    rule_ids = sorted({finding.rule for finding in findings})
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    run = {
        "tool": {"driver": {
            "name": "keyrun",
            "version": __version__,
            "informationUri": INFORMATION_URI,
            "rules": [_sarif_rule(rule_id, titles) for rule_id in rule_ids],
        }},
        "columnKind": "unicodeCodePoints",
        "results": [_sarif_result(finding, index[finding.rule], titles)
                    for finding in findings],
    }
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "sarif": render_sarif}


def _sarif_rule(rule_id: str, titles: dict[str, str]) -> dict[str, Any]:
    title = titles.get(rule_id, rule_id)
    return {
        "id": rule_id,
        "name": "".join(part.title() for part in rule_id.split("-")),
        "shortDescription": {"text": f"{title} found"},
        "help": {"text": "Remove the secret from the file (and from history if it was "
                         "committed), rotate it at its provider, and load it at run time "
                         "with keyrun instead. Mark a deliberate example with keyrun:allow."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "secrets"], "precision": "high"},
    }


def _sarif_result(finding: Finding, rule_index: int, titles: dict[str, str]) -> dict[str, Any]:
    title = titles.get(finding.rule, finding.rule)
    message = f"{title}: {finding.preview}"
    if finding.key:
        message += f" (the value of {finding.key})"
    properties: dict[str, Any] = {"preview": finding.preview}
    if finding.key:
        properties["key"] = finding.key
    if finding.commit:
        properties["commit"] = finding.commit
    return {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": "error",
        "message": {"text": message},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": quote(finding.path), "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": finding.line, "startColumn": finding.column},
        }}],
        "partialFingerprints": {"keyrunFinding/v1": _fingerprint(finding)},
        "properties": properties,
    }


def _fingerprint(finding: Finding) -> str:
    import hashlib

    basis = f"{finding.rule}\0{finding.path}\0{finding.preview}\0{finding.key or ''}"
    return hashlib.sha256(basis.encode("utf-8", "surrogateescape")).hexdigest()[:32]
