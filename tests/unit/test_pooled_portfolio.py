"""A pooled job's scores: the equal-weight portfolio of its symbols (the headline metrics), the
per-symbol cash floor, the pool's registered name and the ``data.symbols`` settings."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from test_diagnostics import _feature_set as diagnostics_feature_set

from huracan.data.ohlcv import bars_per_year
from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.metrics import sharpe_ratio
from huracan.pooled.portfolio import cash_floor, equal_weight, portfolio_metrics
from huracan.registry.promotion import pooled_model_name, registered_model_name
from huracan.settings import DataSettings
from huracan.splits import Fold
from huracan.stages import FoldOutcome, evaluate_walk_forward, run_bars

PPY = bars_per_year("1h")


def _feature_set(seed: int, skip: int = 0):
    """Synthetic 1h features (test_diagnostics' random walk) from their ``skip``-th row."""
    fs, _ = diagnostics_feature_set(seed=seed, n=1200)
    return replace(fs, frame=fs.frame.iloc[skip:])


def _evaluate(fs, predict, bt=None):
    """Three walk-forward folds, forecasts from ``predict(rows) -> array``."""
    bt = bt or BacktestConfig(threshold=0.0)
    folds = [Fold(index=k, train=range(0, 400 + 150 * k), val=range(402 + 150 * k, 500 + 150 * k),
                  test=range(502 + 150 * k, 652 + 150 * k), embargo=2) for k in range(3)]
    outs = [FoldOutcome(f, {"test": predict(f.test)}, 0.0, 0.0, 0.0) for f in folds]
    bars = run_bars(fs, bt, "1h")
    return evaluate_walk_forward(fs, outs, bt, "1h", "t", bars=bars), bars


def _pool(seed: int = 5):
    rng = np.random.default_rng(seed)
    # ETH starts 10 hours later: the union of bar times is longer than either
    sets = {"BTC/USDT": _feature_set(1), "ETH/USDT": _feature_set(2, skip=10)}
    evs, bars = {}, {}
    for sym, fs in sets.items():
        evs[sym], bars[sym] = _evaluate(fs, lambda r: rng.normal(0, 0.002, len(r)))
    index = {s: pd.DatetimeIndex(fs.frame.index) for s, fs in sets.items()}
    return sets, evs, bars, index


def test_the_headline_metrics_are_the_equal_weight_portfolio_of_the_symbols():
    _, evs, bars, index = _pool()
    metrics, evidence, frames = portfolio_metrics(evs, bars, index, PPY)
    nets = {s: ev.results["oos"].returns.set_index("timestamp")["strategy_return"]
            for s, ev in evs.items()}
    union = nets["BTC/USDT"].index.union(nets["ETH/USDT"].index)
    by_hand = sum(n.reindex(union).fillna(0.0) for n in nets.values()) / 2
    assert len(union) > max(len(n) for n in nets.values())  # the symbols' bars differ
    assert metrics["oos_bars"] == len(union) == len(frames["oos"])
    np.testing.assert_allclose(frames["oos"]["strategy_return"], by_hand.to_numpy())
    assert metrics["oos_sharpe"] == pytest.approx(sharpe_ratio(by_hand.to_numpy(), PPY))
    assert metrics["oos_n_trades"] == sum(ev.metrics["oos_n_trades"] for ev in evs.values())
    assert metrics["oos_n_symbols"] == 2.0 and metrics["oos_n_folds"] == 3.0
    for key in ("oos_composite_score", "oos_psr", "oos_ic", "oos_rank_ic", "oos_icir",
                "oos_breakeven_bps", "oos_buy_hold_sharpe", "oos_information_ratio"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert evidence["oos"]["bars"] == len(union)
    # the IC is pooled over both symbols' rows, not read off the (forecast-less) portfolio
    stacked = pd.concat([ev.results["oos"].returns for ev in evs.values()])
    assert metrics["oos_ic_pairs"] == stacked["prediction"].notna().sum()


def test_one_symbol_twice_scores_as_itself():
    fs = _feature_set(1)
    rng = np.random.default_rng(0)
    preds = rng.normal(0, 0.002, 2000)
    ev, bars = _evaluate(fs, lambda r: preds[r.start : r.stop])
    index = pd.DatetimeIndex(fs.frame.index)
    metrics, _, _ = portfolio_metrics({"A": ev, "B": ev}, {"A": bars, "B": bars},
                                      {"A": index, "B": index}, PPY)
    for key in ("oos_sharpe", "oos_total_return", "oos_breakeven_bps", "oos_buy_hold_sharpe"):
        assert metrics[key] == pytest.approx(ev.metrics[key], rel=1e-9), key
    assert metrics["oos_n_trades"] == 2 * ev.metrics["oos_n_trades"]


def test_equal_weight_counts_a_missing_bar_as_zero():
    t = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    out = equal_weight({"a": pd.Series([0.02, 0.04], index=t[:2]),
                        "b": pd.Series([0.0, 0.06], index=t[1:])})
    np.testing.assert_allclose(out.to_numpy(), [0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match="at least one symbol"):
        equal_weight({})


def test_the_cash_floor_decides_per_symbol_by_the_gate_rule():
    fs = _feature_set(1)
    nxt = fs.frame["next_return"].to_numpy()
    rng = np.random.default_rng(1)
    seer, _ = _evaluate(fs, lambda r: nxt[r.start : r.stop])  # knows the next bar: beats cash
    flat, _ = _evaluate(fs, lambda r: np.zeros(len(r)), BacktestConfig(threshold=0.01))
    noise, _ = _evaluate(fs, lambda r: rng.normal(0, 0.002, len(r)))
    floor = cash_floor({"SEER": seer, "FLAT": flat, "NOISE": noise}, min_psr=0.9, min_bars=100)
    assert floor["SEER"]["trade"] and floor["SEER"]["psr"] >= 0.9
    assert "beats cash" in floor["SEER"]["reason"]
    assert not floor["FLAT"]["trade"] and "never trades" in floor["FLAT"]["reason"]
    assert floor["NOISE"]["trade"] == (floor["NOISE"]["total_return"] > 0
                                       and floor["NOISE"]["psr"] >= 0.9)
    assert floor["SEER"]["bars"] == 450 and floor["SEER"]["window"] == "oos"
    assert floor["SEER"]["trades"] == seer.metrics["oos_n_trades"]
    # a forward split decides on validation, never on the test split
    from dataclasses import replace

    forward = replace(noise, scored="test",
                      results={"val": seer.results["oos"], "test": flat.results["oos"]})
    assert cash_floor({"F": forward}, min_psr=0.9, min_bars=100)["F"]["window"] == "val"
    assert cash_floor({"F": forward}, min_psr=0.9, min_bars=100)["F"]["trade"]
    short = cash_floor({"SEER": seer}, min_psr=0.9, min_bars=451)
    assert not short["SEER"]["trade"] and "min_eval_bars=451" in short["SEER"]["reason"]


def test_a_pool_has_one_registered_name_listing_its_symbols():
    assert pooled_model_name(["BTC/USDT", "ETH/USDT", "LTC/USDT"], "1h") == \
        "huracan-pool-BTCUSDT-ETHUSDT-LTCUSDT-1h"
    assert registered_model_name("BTC/USDT", "1h") == "huracan-BTCUSDT-1h"
    with pytest.raises(ValueError, match="two or more"):
        pooled_model_name(["BTC/USDT"], "1h")


def test_data_symbols_make_a_pooled_job_and_are_checked():
    base = {"path": "x_BTCUSDT_1h.parquet", "symbol": "BTC/USDT", "timeframe": "1h"}
    assert not DataSettings(**base).pooled
    assert not DataSettings(**base, symbols=["BTC/USDT"]).pooled
    pool = DataSettings(**base, symbols=["BTC/USDT", "ETH/USDT"], paths={"ETH/USDT": "e.pq"})
    assert pool.pooled and pool.symbols == ["BTC/USDT", "ETH/USDT"]
    with pytest.raises(ValueError, match=r"must list data\.symbol"):
        DataSettings(**base, symbols=["ETH/USDT", "LTC/USDT"])
    with pytest.raises(ValueError, match="twice"):
        DataSettings(**base, symbols=["BTC/USDT", "BTC/USDT"])
    with pytest.raises(ValueError, match=r"not in data\.symbols"):
        DataSettings(**base, symbols=["BTC/USDT", "ETH/USDT"], paths={"SOL/USDT": "s.pq"})


def test_a_pooled_job_refuses_what_it_does_not_support_and_finds_each_symbols_file(tmp_path):
    from huracan.pooled.job import check_pooled, market_settings
    from huracan.settings import JobSettings, RegimeSettings

    for pair in ("BTCUSDT", "ETHUSDT"):
        (tmp_path / f"x_{pair}_1h.parquet").write_bytes(b"")
    (tmp_path / "ltc.parquet").write_bytes(b"")
    data = DataSettings(path=str(tmp_path / "x_BTCUSDT_1h.parquet"), symbol="BTC/USDT",
                        timeframe="1h", symbols=["BTC/USDT", "ETH/USDT", "LTC/USDT"],
                        paths={"LTC/USDT": str(tmp_path / "ltc.parquet")})
    model = {"_target_": "huracan.models.lightgbm.LightGBMForecaster"}
    settings = JobSettings.from_dict({"data": {"path": data.path, "symbol": data.symbol,
                                               "timeframe": "1h"},
                                      "model": model, "regime": {"kind": "none"}})
    settings = replace(settings, data=data)
    check_pooled(settings)
    eth = market_settings(settings, "ETH/USDT").data
    assert eth.path == str(tmp_path / "x_ETHUSDT_1h.parquet") and eth.symbol == "ETH/USDT"
    ltc = market_settings(settings, "LTC/USDT").data
    assert not eth.pooled and ltc.path == str(tmp_path / "ltc.parquet")
    assert market_settings(settings, "BTC/USDT").data.symbols == []
    with pytest.raises(ValueError, match=r"regime\.kind=volatility"):
        check_pooled(replace(settings, regime=RegimeSettings(kind="volatility")))
    with pytest.raises(ValueError, match="top_n"):
        check_pooled(replace(settings, top_n=5))
    with pytest.raises(ValueError, match="context"):
        check_pooled(replace(settings, features=replace(settings.features,
                                                        context=["ETH/USDT"])))
    with pytest.raises(ValueError, match="two or more"):
        check_pooled(replace(settings, data=replace(data, symbols=[], paths={})))
