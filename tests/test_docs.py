"""The README's source reference is generated from the sources' own declarations."""

from __future__ import annotations

from pathlib import Path

from keyrun.docs import replace_in

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_source_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert replace_in(text) == text, "run: python -m keyrun.docs --write"
