"""Every Python code block of the README runs as written, each in a fresh namespace (a block
that uses a name it does not define fails here), with sample sizes shrunk for the test: each
integer literal of 1,000 or more becomes 256. Nothing else in the code is changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
BIG = re.compile(r"(?<![\w.])(\d[\d_]{3,})(?![\w.])")


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def _shrink(code: str) -> str:
    return BIG.sub(
        lambda m: "256" if int(m.group(1).replace("_", "")) >= 1000 else m.group(1), code
    )


def test_readme_has_python_blocks():
    assert len(_blocks()) >= 4


@pytest.mark.parametrize("line, code", _blocks(), ids=[f"line{n}" for n, _ in _blocks()])
def test_readme_block_runs(line, code):
    exec(compile(_shrink(code), f"README.md:{line}", "exec"), {"__name__": "__readme__"})
