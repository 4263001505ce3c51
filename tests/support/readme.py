"""README code blocks that tests run: a fenced block right after ``<!-- test: NAME -->``."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.S)


def blocks(readme: Path = README) -> dict[str, tuple[str, str]]:
    """name -> (language, code) of every marked block."""
    return {name: (lang, code) for name, lang, code in _BLOCK.findall(readme.read_text())}
