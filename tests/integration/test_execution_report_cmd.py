"""benchmarks/execution_report.py --quick as a command: one symbol (BTC/USDT 1h from
../shared/data), LightGBM, two monthly walk-forward folds in 2024 trained once and scored under
every fill (about 5-10 s)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import execution_report as er  # noqa: E402


@pytest.mark.slow  # a command: a subprocess
def test_quick_report_runs_as_a_command(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "execution_report.py"),
                           "--quick", "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    [r] = report["rows"]
    assert (r["symbol"], r["model"]) == ("BTC", "lightgbm")
    assert r["delay_bars"] == r["oos_bars"] > 0  # the quick window lies inside the 5m file
    for key, _ in er.FILL_COLUMNS:
        assert math.isfinite(r[f"sharpe_{key}"]), key
    assert r["beats_cash"] in (True, False) and 0.0 <= r["psr"] <= 1.0
    # the same positions pay the estimated spread on top of the fee: never more net return
    assert r["total_return"] <= r["return_next_open"] + 1e-12
    assert report["table"] in proc.stdout
    assert "Candidates that clear cash" in proc.stdout
