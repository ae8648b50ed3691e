"""Slow benches as tests: the soak (10,000 requests through a daemon process; its RSS must not grow by 5% or
more) and the red-team replay of issue 13's attacks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.mark.slow
def test_ten_thousand_requests_through_the_daemon(tiny_onnx, tmp_path):
    import soak

    result = soak.main(["--model", str(tiny_onnx), "--requests", "10000", "--out", str(tmp_path / "soak.json")])
    assert result["errors"] == 0 and result["dropped"] == 0 and result["exit_code"] == 0
    assert result["daemon_requests"] == 10_000 + result["warmup"] and result["daemon_errors"] == 0
    assert result["rss_growth_pct"] < 5.0


@pytest.mark.slow
def test_the_red_team_replay_passes_every_attack(tmp_path):
    """bench/redteam.py end to end (≈ 3 minutes): every attack answered as promised, no traceback, nothing lost."""
    import redteam

    assert redteam.main(["--out", str(tmp_path / "redteam.json")]) == 0
    result = json.loads((tmp_path / "redteam.json").read_text())
    assert result["tracebacks"] == 0 and result["items_lost"] == 0 and result["passed"] == result["attacks"]
