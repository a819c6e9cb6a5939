"""benchmarks/execution_report.py: its pure helpers (the tables, the delay-fill coverage mask); its
--quick run as a command is tests/integration/test_execution_report.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.execution import ExecutionInputError, market_bars

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import execution_report as er  # noqa: E402

H1, M5 = pd.Timedelta("1h"), pd.Timedelta("5m")


def row(symbol: str, model: str, beats: bool, delay: float = math.nan) -> dict:
    r = {"symbol": symbol, "model": model, "breakeven_bps": -3.25, "ic": 0.0123,
         "rank_ic": -0.0045, "breakeven_bps_fee_only": 1.5, "ic_mean": 0.01, "icir": 0.5,
         "buy_hold_sharpe": 1.1,
         "trades": 42, "total_return": -0.0567, "psr": 0.12, "beats_cash": beats,
         "oos_bars": 1000, "psr_default": 0.95, "beats_cash_default": beats}
    for k, _ in er.FILL_COLUMNS:
        r[f"sharpe_{k}"] = 0.5
    r["sharpe_delay"] = delay
    return r


def test_tables_show_every_fill_the_evidence_and_the_cash_count():
    text = er.markdown_tables([row("BTC", "lightgbm", True, delay=-0.25),
                               row("BTC", "xgboost", False), row("LTC", "lightgbm", False)])
    lines = text.splitlines()
    assert lines[0] == ("| symbol | candidate | close | next_open | next_open + 2 bps ³ | "
                        "next_open + AR spread | "
                        "delay 5m ¹ | next_open, same bars ¹ | lag1 ² |")
    assert lines[2] == "| BTC | lightgbm | 0.50 | 0.50 | 0.50 | 0.50 | -0.25 | 0.50 | 0.50 |"
    assert lines[4].split(" | ")[6] == "n/a"  # LTC: no finer series, no delay figure
    evidence = [x for x in lines if x.startswith("| BTC | xgboost | 1000")]
    assert evidence == ["| BTC | xgboost | 1000 | 42 | -5.7 % | 1.5 / -3.2 | 0.0123 | -0.0045 | "
                        "0.0100 / 0.50 | 1.10 | 0.950 / 0.120 | no / no |"]
    assert lines[-2:] == ["Candidates that clear cash (next_open + AR spread, PSR >= 0.9): 1 of 3 "
                          "(BTC 1 of 2, LTC 0 of 1).",
                          "Under the default costs (next_open + 2 bps): 1 of 3 (BTC 1 of 2, LTC 0 "
                          "of 1)."]


def test_tables_refuse_no_rows():
    with pytest.raises(ValueError, match="no candidate rows"):
        er.markdown_tables([])


def test_delay_coverage_is_exactly_where_delay_fills_can_be_scored():
    hours = pd.date_range("2024-01-01", periods=6, freq="1h", tz="UTC")
    # 5m bars opening 02:00 .. 04:55, minus the one opening 03:00 (closing 03:05: the fill bar
    # of the 02:00 bar with 5m latency)
    fine_ts = pd.date_range("2024-01-01 02:00", "2024-01-01 04:55", freq="5min", tz="UTC")
    fine_ts = fine_ts[fine_ts != pd.Timestamp("2024-01-01 03:00", tz="UTC")]
    fine = pd.DataFrame({"timestamp": fine_ts, "close": np.linspace(100, 101, len(fine_ts))})
    covered = er.delay_covered(hours, H1, fine, M5, M5)
    # 00:00: the first 5m close after 01:05 is 02:05, past the next bar's close (02:00);
    # 01:00: 02:05 closes in time; 02:00: 03:05 is missing, 03:10 still closes before 04:00;
    # 04:00 and 05:00: their targets (05:05, 06:05) are past the series' last close (05:00)
    assert covered.tolist() == [False, True, True, True, False, False]
    cfg = BacktestConfig(fill="delay", latency="5m")
    frame = pd.DataFrame({"bar_close": 100.0, "next_return": 0.0}, index=hours.rename("timestamp"))
    bars = market_bars(frame[covered], cfg, 8760, fine=fine, fine_timeframe="5m")
    assert len(bars) == 3
    with pytest.raises(ExecutionInputError, match="fill=delay"):
        market_bars(frame, cfg, 8760, fine=fine, fine_timeframe="5m")


def test_parity_table_pools_pairs_with_equal_capital_beside_freqai():
    import walkforward_parity as wp

    per_pair = [{"symbol": "ADA/BTC", "total_return": 0.10, "net_profit_pct": 10.0, "trades": 2,
                 "profit_factor": 3.0, "win_rate_pct": 50.0},
                {"symbol": "ZEC/BTC", "total_return": -0.04, "net_profit_pct": -4.0, "trades": 1,
                 "profit_factor": 0.0, "win_rate_pct": 0.0}]
    trades = pd.DataFrame({"return": [0.12, -0.02, -0.04]})
    pooled = wp.pooled(per_pair, trades)
    assert pooled["net_profit_pct"] == pytest.approx(3.0)  # mean of +10 % and -4 %
    assert (pooled["trades"], pooled["profit_factor"]) == (3, pytest.approx(2.0))
    assert pooled["win_rate_pct"] == pytest.approx(100 / 3)
    lines = wp.comparison_table({"pooled": pooled, "per_pair": per_pair}).splitlines()
    assert lines[2] == "| Huracan, pooled (next open, fee only) | +3.00 % | 3 | 2.00 | 33.3 % |"
    assert lines[3] == "| FreqAI, pooled (next open, fee only) | +0.60 % | 97 | 1.06 | 51.5 % |"
    assert lines[5] == "| Huracan ZEC/BTC | -4.00 % | 1 | 0.00 | 0.0 % |"
