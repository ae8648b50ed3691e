"""The benches write the README's result tables: the block between its markers is replaced, nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from accuracy import replace_readme_block  # noqa: E402


def test_a_readme_block_is_rewritten_and_the_rest_kept(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# t\nintro\n<!-- bench:accuracy -->\nold | table\n<!-- /bench:accuracy -->\ntail 1%\n")
    replace_readme_block("accuracy", "| new | 77.5% |\n", readme)
    replace_readme_block("accuracy", "| newer | 78.0% |", readme)  # idempotent in shape
    assert readme.read_text() == ("# t\nintro\n<!-- bench:accuracy -->\n| newer | 78.0% |\n<!-- /bench:accuracy -->"
                                  "\ntail 1%\n")
    with pytest.raises(SystemExit, match="no <!-- bench:latency -->"):
        replace_readme_block("latency", "x", readme)


def test_the_readme_has_both_blocks():
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for name in ("accuracy", "latency"):
        assert f"<!-- bench:{name} -->" in text and f"<!-- /bench:{name} -->" in text
