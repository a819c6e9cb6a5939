"""MLflow metric names grouped by ``/`` prefix (huracan.tracking.names, issue 26): today's names,
the names runs logged before, and the readers' fallback to them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from huracan.regime.jobs import format_switching, regime_evidence
from huracan.tracking.names import (
    importance_metric,
    labels_metric,
    legacy_name,
    modern_name,
    modern_names,
    parse_regime_metric,
    read_metric,
    regime_metric,
    switching_metric,
    time_metric,
)

#: today's name -> the name a run logged before issue 26
RENAMED = {
    "time/fit_s": "time_fit_s",
    "time/log_metrics_s": "time_log_metrics_s",
    "time/importance_permutation_s": "importance_time_permutation_s",
    "regime/high/oos_sharpe": "oos_sharpe__regime_high",
    "regime/low/val_n_trades": "val_n_trades__regime_low",
    "labels/dropped_gap": "labels_dropped_gap",
    "labels/ETHUSDT/dropped_end_of_data": "ETHUSDT/labels_dropped_end_of_data",
    "importance/baseline_loss": "importance_baseline_loss",
    "importance/shift_rho": "importance_shift_rho",
    "importance/family_momentum_shap": "importance_family_momentum_shap",
    "importance/BTCUSDT/family_context_shap": "BTCUSDT/importance_family_context_shap",
    "switching/bars": "switching_bars",
    "switching/candidates": "switching_candidates",
    "switching/switching_sharpe": "switching_sharpe",
    "switching/single_best_n_trades": "single_best_n_trades",
    "switching/buy_hold_max_drawdown": "buy_hold_max_drawdown",
    "sweep/jobs": "sweep_jobs",
    "sweep/failed_jobs": "sweep_failed_jobs",
    "drift_score/rv_24": "drift_score.rv_24",
    "scale_ratio/ret_1": "scale_ratio.ret_1",
}

#: names that never changed: the scored windows' trading metrics stay top-level
KEPT = ("val_sharpe", "test_n_trades", "oos_composite_score", "val_buy_hold_sharpe",
        "BTCUSDT/oos_sharpe", "test_ic_pairs", "best_val_composite_score", "drift_share",
        "n_trials", "day_sharpe")


@pytest.mark.parametrize(("new", "old"), sorted(RENAMED.items()))
def test_every_rename_maps_both_ways(new, old):
    assert legacy_name(new) == old
    assert modern_name(old) == new
    assert modern_name(new) == new  # idempotent


@pytest.mark.parametrize("name", KEPT)
def test_trading_metrics_keep_their_names(name):
    assert modern_name(name) == name and legacy_name(name) is None


def test_builders_give_the_grouped_names():
    assert time_metric("fit") == "time/fit_s"
    assert regime_metric("oos", "sharpe", "high") == "regime/high/oos_sharpe"
    assert labels_metric("gap") == "labels/dropped_gap"
    assert labels_metric("gap", "BTCUSDT") == "labels/BTCUSDT/dropped_gap"
    assert importance_metric("baseline_loss") == "importance/baseline_loss"
    assert importance_metric("family_x_shap", "ETHUSDT") == "importance/ETHUSDT/family_x_shap"
    assert switching_metric("bars") == "switching/bars"


def test_parse_regime_metric_reads_both_spellings():
    assert parse_regime_metric("regime/high/oos_sharpe") == ("oos_sharpe", "high")
    assert parse_regime_metric("oos_sharpe__regime_high") == ("oos_sharpe", "high")
    assert parse_regime_metric("oos_sharpe") is None
    assert parse_regime_metric("regime/high") is None


def test_read_metric_falls_back_to_a_past_runs_name():
    old_run = {"val_n_trades__regime_high": 31.0, "time_fit_s": 2.5, "val_sharpe": 1.2}
    assert read_metric(old_run, "regime/high/val_n_trades") == 31.0
    assert read_metric(old_run, "time/fit_s") == 2.5
    assert read_metric(old_run, "val_sharpe") == 1.2
    assert read_metric(old_run, "regime/low/val_n_trades") is None
    assert read_metric(old_run, "regime/low/val_n_trades", 0.0) == 0.0
    # a run carrying both: today's name wins
    both = {"time/fit_s": 1.0, "time_fit_s": 9.0}
    assert read_metric(both, "time/fit_s") == 1.0
    assert modern_names(both) == {"time/fit_s": 1.0}
    assert modern_names(old_run) == {"regime/high/val_n_trades": 31.0, "time/fit_s": 2.5,
                                     "val_sharpe": 1.2}


def test_regime_evidence_logs_grouped_names():
    idx = pd.date_range("2024-01-01", periods=40, freq="h", tz="UTC")
    returns = pd.DataFrame({"timestamp": idx, "position": [1.0, 0.0] * 20,
                            "strategy_return": [0.001, -0.0005] * 20,
                            "exit_leg": [0.0] * 40, "prediction": [0.1, -0.1] * 20,
                            "label": [0.001, -0.0005] * 20})
    regimes = pd.Series(["high"] * 20 + ["low"] * 20).to_numpy(dtype=object)
    flat, nested = regime_evidence("val", returns, regimes, 8760.0, min_bars=5)
    assert flat and all(k.startswith("regime/") for k in flat)
    assert flat["regime/high/val_bars"] == 20 and set(nested) == {"high", "low"}


def test_switching_table_reads_a_past_sweeps_names():
    """format_switching reads today's ``switching/...`` names and, in a past sweep's report,
    the old top-level ``switching_sharpe``..."""
    base = {"bars": 10, "start": "2024-01-01", "end": "2024-02-01"}
    vals = {"sharpe": 1.5, "max_drawdown": -0.1, "total_return": 0.2, "n_trades": 7.0}
    new = {switching_metric(f"switching_{k}"): v for k, v in vals.items()}
    old = {f"switching_{k}": v for k, v in vals.items()}
    a = format_switching({**base, "metrics": new})
    b = format_switching({**base, "metrics": old})
    assert a == b and "1.50" in a and "nan" in a  # single best / buy & hold not given
    assert not math.isnan(read_metric(new, "switching/switching_sharpe") or math.nan)


def test_select_rank_by_reads_a_past_runs_per_regime_metrics():
    """``huracan select --rank-by`` (huracan.regime.live._metric_value) reads the per-regime
    value of a version's run logged before issue 26 as it reads today's."""
    from types import SimpleNamespace

    from huracan.regime.live import _metric_value

    def run(metrics):
        return SimpleNamespace(data=SimpleNamespace(metrics=metrics,
                                                    params={"objective": "val_composite_score"},
                                                    tags={}))

    old = run({"val_sharpe__regime_high": 2.0, "val_n_trades__regime_high": 40.0,
               "val_sharpe": 0.5})
    new = run({"regime/high/val_sharpe": 2.0, "regime/high/val_n_trades": 40.0,
               "val_sharpe": 0.5})
    assert _metric_value(old, "sharpe", "high", 30) == (2.0, "regime/high/val_sharpe")
    assert _metric_value(new, "sharpe", "high", 30) == (2.0, "regime/high/val_sharpe")
    # too few trades in the regime: the whole selection window, either way
    assert _metric_value(old, "sharpe", "high", 50) == (0.5, "val_sharpe")
    assert _metric_value(new, "sharpe", "low", 30) == (0.5, "val_sharpe")
