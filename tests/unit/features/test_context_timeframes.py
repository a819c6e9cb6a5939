"""Context-symbol and higher-timeframe features (huracan/features/context.py, timeframes.py).

- the context join: by bar open time; a missing context bar is NaN with ``available`` 0, never
  filled from an earlier or later bar; a window touching it is NaN;
- the higher-timeframe availability: a 4h bar's values appear first on the base row whose CLOSE
  is at/after the 4h close, and a missing 4h bar is NaN (no older bar carried forward);
- the PREFIX test on real BTC/ETH 1h candles with real outages: truncating the data at a bar
  leaves every earlier row's context and HTF features unchanged (cuts around 4h and 1d closes and
  across real gaps);
- the planted lead-lag: the target's 1-bar return follows the context's one bar earlier; a small
  LightGBM forward fit finds it with context features (OOS IC clearly > 0), not without (IC ~ 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from huracan.config import shared_data_root
from huracan.features.build import FeatureConfig, build_features, compute_features
from huracan.features.context import context_features, grid_close
from huracan.features.naming import feature_family
from huracan.features.timeframes import check_timeframes, resample, timeframe_features


def _walk(n: int, seed: int, start: str = "2021-01-01", r: np.ndarray | None = None
          ) -> pd.DataFrame:
    """Seeded 1h candles (``timestamp`` column) whose log returns are ``r`` (default iid)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.01, n) if r is None else r
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.002, n)) * close
    ts = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": open_,
                         "high": np.maximum(open_, close) + spread,
                         "low": np.minimum(open_, close) - spread, "close": close,
                         "volume": rng.uniform(10.0, 100.0, n)})


# ----------------------------------------------------------------------------- context join
def test_missing_context_bar_is_nan_with_flag_zero_never_filled() -> None:
    target = _walk(400, seed=1)
    ctx = _walk(400, seed=2)
    gone = target["timestamp"].iloc[300]
    ctx_missing = ctx[ctx["timestamp"] != gone]
    cfg = FeatureConfig(return_horizons=[1, 3], volatility_windows=[12], context_windows=[24],
                        volume_windows=[24], calendar=False)
    fs = build_features(target, "1h", cfg, context={"ETH/USDT": ctx_missing},
                        keep_unlabelled=True)
    f = fs.frame
    assert "ctx_ETHUSDT_available" in fs.feature_names
    assert {feature_family(c) for c in fs.feature_names if c.startswith("ctx_")} == {"context"}
    assert f.loc[gone, "ctx_ETHUSDT_available"] == 0.0
    assert f["ctx_ETHUSDT_available"].drop(gone).eq(1.0).all()
    # the missing bar's values are NaN: not the previous bar's, not the next bar's
    for col in ("ctx_ETHUSDT_ret_1", "ctx_ETHUSDT_ret_3", "ctx_ETHUSDT_rs_1",
                "ctx_ETHUSDT_rv_12", "ctx_ETHUSDT_beta_24", "ctx_ETHUSDT_corr_24"):
        assert np.isnan(f.loc[gone, col]), col
    # windows touching it are NaN too (ret_1 of the next bar spans the missing close)...
    nxt = gone + pd.Timedelta("1h")
    assert np.isnan(f.loc[nxt, "ctx_ETHUSDT_ret_1"])
    assert np.isnan(f.loc[gone + pd.Timedelta("23h"), "ctx_ETHUSDT_beta_24"])
    # ...and the row is KEPT (context NaN is not dropped like an own-feature warm-up)
    assert gone in f.index
    # the join is by open time: ret_1 at t is ln(ctx close_t / ctx close_{t-1})
    t = target["timestamp"].iloc[200]
    c = ctx.set_index("timestamp")["close"]
    assert f.loc[t, "ctx_ETHUSDT_ret_1"] == pytest.approx(
        np.log(c[t] / c[t - pd.Timedelta("1h")]), rel=1e-12)
    # relative strength: target ret_k minus context ret_k
    assert f.loc[t, "ctx_ETHUSDT_rs_3"] == pytest.approx(
        f.loc[t, "ret_3"] - f.loc[t, "ctx_ETHUSDT_ret_3"], rel=1e-9)


def test_context_beta_and_corr_of_a_scaled_copy() -> None:
    """A target whose 1-bar log returns are 2x the context's: beta 2, correlation 1."""
    ctx = _walk(300, seed=3)
    r = np.log(ctx["close"]).diff().fillna(0.0).to_numpy()
    grid = pd.DatetimeIndex(ctx["timestamp"])
    target_close = pd.Series(50.0 * np.exp(np.cumsum(2.0 * r)), index=grid)
    out = context_features(target_close, {"BTC/USDT": grid_close(ctx, grid)}, [1], [24], [48])
    assert out["ctx_BTCUSDT_beta_48"].iloc[60:].to_numpy() == pytest.approx(2.0, rel=1e-6)
    assert out["ctx_BTCUSDT_corr_48"].iloc[60:].to_numpy() == pytest.approx(1.0, rel=1e-6)
    assert out["ctx_BTCUSDT_beta_48"].iloc[:48].isna().all()  # warm-up: 48 returns needed


def test_context_off_grid_is_refused() -> None:
    ctx = _walk(50, seed=4)
    grid = pd.DatetimeIndex(ctx["timestamp"])
    close = grid_close(ctx, grid)
    with pytest.raises(ValueError, match="not on the target's bar grid"):
        context_features(close, {"ETH/USDT": close.iloc[1:]}, [1], [12], [24])


# ----------------------------------------------------------------------------- higher timeframes
def test_4h_bar_appears_only_once_it_has_closed() -> None:
    cand = _walk(24 * 20, seed=5)  # starts at midnight
    cfg = FeatureConfig(return_horizons=[1], volatility_windows=[12], volume_windows=[24],
                        calendar=False, timeframes=["4h"])
    fs = build_features(cand, "1h", cfg, keep_unlabelled=True)
    f = fs.frame
    close = cand.set_index("timestamp")["close"]
    day = pd.Timestamp("2021-01-10", tz="UTC")
    # the 4h bar 04:00-08:00 closes at 08:00: on the 07:00 row (closing at 08:00) first
    bar_close = close[day + pd.Timedelta("7h")]
    prev_close = close[day + pd.Timedelta("3h")]
    expect = np.log(bar_close / prev_close)
    assert f.loc[day + pd.Timedelta("7h"), "htf_4h_ret_1"] == pytest.approx(expect, rel=1e-12)
    for h in (4, 5, 6):  # rows inside 04:00-08:00 still read the 00:00-04:00 bar
        assert f.loc[day + pd.Timedelta(f"{h}h"), "htf_4h_ret_1"] == pytest.approx(
            np.log(prev_close / close[day - pd.Timedelta("1h")]), rel=1e-12)
    assert f.loc[day + pd.Timedelta("8h"), "htf_4h_ret_1"] == pytest.approx(expect, rel=1e-12)
    assert f["htf_4h_available"].eq(1.0).all()
    assert {feature_family(c) for c in fs.feature_names if c.startswith("htf_")} == \
        {"higher_timeframe"}


def test_missing_4h_bar_is_nan_not_carried_forward() -> None:
    cand = _walk(24 * 20, seed=6)
    hole = (cand["timestamp"] >= "2021-01-10 04:00") & (cand["timestamp"] < "2021-01-10 09:00")
    cfg = FeatureConfig(return_horizons=[1], volatility_windows=[12], volume_windows=[24],
                        calendar=False, timeframes=["4h"])
    grid = cand.set_index("timestamp")
    grid.loc[hole.to_numpy()] = np.nan  # NaN rows: missing bars on the full grid
    f = timeframe_features(grid, "1h", ["4h"], cfg, compute_features)
    # the 04:00-08:00 bar has no base bar: the first row after the hole (09:00, closing 10:00)
    # expects it and finds nothing: NaN, flag 0 (not the 00:00-04:00 bar)
    row = pd.Timestamp("2021-01-10 09:00", tz="UTC")
    assert f.loc[row, "htf_4h_available"] == 0.0
    assert np.isnan(f.loc[row, "htf_4h_ret_1"])
    # the 08:00-12:00 bar (built from 09:00-11:00 present) is read from the 11:00 row on; its
    # 1-bar return is NaN: the 4h features restart after the missing 4h bar
    later = pd.Timestamp("2021-01-10 11:00", tz="UTC")
    assert f.loc[later, "htf_4h_available"] == 1.0
    assert np.isnan(f.loc[later, "htf_4h_ret_1"])


def test_timeframes_must_be_multiples_of_the_base() -> None:
    assert check_timeframes(["4h", "1d"], "1h") == [pd.Timedelta("4h"), pd.Timedelta("1D")]
    with pytest.raises(ValueError, match="90m is not a whole multiple"):
        check_timeframes(["90m"], "1h")
    with pytest.raises(ValueError, match="1h is not a whole multiple"):
        build_features(_walk(300, seed=7), "1h", FeatureConfig(timeframes=["1h"]))


def test_resample_uses_the_bars_present() -> None:
    base = _walk(8, seed=8).set_index("timestamp")
    base.iloc[1] = np.nan  # 01:00 missing
    bars = resample(base, pd.Timedelta("4h"))
    assert list(bars.index.hour) == [0, 4]
    assert bars["volume"].iloc[0] == pytest.approx(base["volume"].iloc[[0, 2, 3]].sum())
    assert bars["close"].iloc[0] == base["close"].iloc[3]
    assert bars["open"].iloc[0] == base["open"].iloc[0]


def test_settings_reject_context_paths_of_unlisted_symbols() -> None:
    with pytest.raises(ValueError, match="context_paths names"):
        FeatureConfig(context=["BTC/USDT"], context_paths={"ETH/USDT": "x.parquet"})
    with pytest.raises(ValueError, match="context_windows"):
        FeatureConfig(context_windows=[1])
    with pytest.raises(ValueError, match="unknown timeframe '4x'"):
        FeatureConfig(timeframes=["4x"])


# ----------------------------------------------------------------------------- prefix test
def _lake(symbol: str) -> pd.DataFrame:
    path = Path(shared_data_root()) / "ohlcv" / \
        f"binance-spot_{symbol}_1h_20180101-20241231.parquet"
    if not path.exists():
        pytest.skip(f"{path} not present")
    c = pd.read_parquet(path)
    keep = (c["timestamp"] >= "2018-04-15") & (c["timestamp"] < "2018-07-10")
    return c[keep].reset_index(drop=True)


#: cut points (the last bar kept): around a 4h close (02:00 / 03:00 / 04:00 rows: the 03:00 row
#: closes at 04:00), around a 1d close (23:00 / 00:00), the last bar before real outages
#: (2018-06-26 02:00 +10 bars, 2018-07-04 01:00 +7 bars), the first bars after them, and a bar
#: right after a context-only gap (ETH bars removed below)
CUTS = ("2018-06-20 02:00", "2018-06-20 03:00", "2018-06-20 04:00", "2018-06-20 23:00",
        "2018-06-21 00:00", "2018-06-26 01:00", "2018-06-26 12:00", "2018-06-26 13:00",
        "2018-07-04 00:00", "2018-07-04 08:00", "2018-06-15 06:00", "2018-06-15 09:00")


def test_prefix_truncation_leaves_earlier_context_and_htf_rows_unchanged() -> None:
    btc, eth = _lake("BTCUSDT"), _lake("ETHUSDT")
    # a context-only outage: ETH 2018-06-15 05:00-07:00 missing while BTC trades
    eth = eth[~eth["timestamp"].between(pd.Timestamp("2018-06-15 05:00", tz="UTC"),
                                        pd.Timestamp("2018-06-15 07:00", tz="UTC"))]
    cfg = FeatureConfig(context=["ETH/USDT"], timeframes=["4h", "1d"])
    full = build_features(btc, "1h", cfg, context={"ETH/USDT": eth}, keep_unlabelled=True)
    names = [c for c in full.feature_names if feature_family(c) in ("context", "higher_timeframe")]
    assert any(c.startswith("ctx_") for c in names) and any(c.startswith("htf_1d") for c in names)
    row = pd.Timestamp("2018-06-15 06:00", tz="UTC")
    assert full.frame.loc[row, "ctx_ETHUSDT_available"] == 0.0
    for cut in CUTS:
        end = pd.Timestamp(cut, tz="UTC")
        part = build_features(btc[btc["timestamp"] <= end], "1h", cfg,
                              context={"ETH/USDT": eth[eth["timestamp"] <= end]},
                              keep_unlabelled=True)
        expect = full.frame.loc[full.frame.index <= end, full.feature_names]
        got = part.frame[part.feature_names]
        assert part.feature_names == full.feature_names
        assert got.index.equals(expect.index), cut
        pd.testing.assert_frame_equal(got[names], expect[names], check_exact=True,
                                      obj=f"cut at {cut}")
        # some of the last rows do carry HTF values (the test is not vacuous)
        assert got[["htf_4h_ret_1", "htf_1d_ret_1"]].iloc[-24:].notna().all().all(), cut


def test_prefix_truncation_inside_a_partly_missing_4h_bar() -> None:
    """Cuts at every bar around target gaps (inside partly missing 4h periods) and a
    context-only gap: earlier rows are bitwise unchanged."""
    cand = _walk(24 * 40, seed=9)
    ctx = _walk(24 * 40, seed=10)
    cand = cand.drop(index=[500, 501, 502, 700])
    ctx = ctx.drop(index=[600, 601])
    cfg = FeatureConfig(context=["BTC/USDT"], timeframes=["4h", "1d"], volume_windows=[24])
    full = build_features(cand, "1h", cfg, context={"BTC/USDT": ctx}, keep_unlabelled=True)
    names = [c for c in full.feature_names if c.startswith(("ctx_", "htf_"))]
    # every bar around the gaps (target 500-502 and 700, context 600-601; 4h and 1d closes
    # inside) and every 53rd bar elsewhere
    cuts = sorted({*range(494, 510), *range(597, 605), *range(697, 705), *range(718, 722),
                   *range(200, 960, 53)})
    for i in cuts:
        end = pd.Timestamp("2021-01-01", tz="UTC") + pd.Timedelta(hours=i)
        part = build_features(cand[cand["timestamp"] <= end], "1h", cfg,
                              context={"BTC/USDT": ctx[ctx["timestamp"] <= end]},
                              keep_unlabelled=True)
        expect = full.frame.loc[full.frame.index <= end, names]
        pd.testing.assert_frame_equal(part.frame[names], expect, check_exact=True,
                                      obj=f"cut at bar {i}")


# ----------------------------------------------------------------------------- lead-lag
def _ic(model_cols: list[str], frame: pd.DataFrame, n_train: int) -> float:
    from huracan.models.lightgbm import LightGBMForecaster

    X = frame[model_cols].to_numpy(np.float32)
    y = frame["label"].to_numpy(np.float64)
    n_val = 500
    m = LightGBMForecaster(n_estimators=30, learning_rate=0.1, num_leaves=7,
                           min_child_samples=20, n_jobs=1, seed=0, early_stopping_rounds=30)
    m.fit(X[:n_train], y[:n_train], X[n_train:n_train + n_val], y[n_train:n_train + n_val],
          feature_names=model_cols)
    pred = m.predict(X[n_train + n_val:])
    return float(spearmanr(pred, y[n_train + n_val:]).statistic)


def test_planted_lead_lag_is_found_with_context_only() -> None:
    """Target 1-bar log return = 0.6 x the context's one bar earlier + noise: the label of row
    t (the target's return over bar t+1) is 0.6 x ctx_..._ret_1 at row t, invisible in the
    target's own past (the context's returns are iid)."""
    rng = np.random.default_rng(25)
    n = 5000
    r_ctx = rng.normal(0.0, 0.01, n)
    r_tgt = 0.6 * np.concatenate([[0.0], r_ctx[:-1]]) + rng.normal(0.0, 0.006, n)
    ctx = _walk(n, seed=11, r=r_ctx)
    target = _walk(n, seed=12, r=r_tgt)
    cfg = FeatureConfig(context=["BTC/USDT"])
    fs = build_features(target, "1h", cfg, context={"BTC/USDT": ctx})
    own = [c for c in fs.feature_names if feature_family(c) == "own"]
    with_ctx = fs.feature_names
    assert len(with_ctx) > len(own)
    n_train = int(len(fs.frame) * 0.5)
    ic_ctx = _ic(with_ctx, fs.frame, n_train)
    ic_own = _ic(own, fs.frame, n_train)
    assert ic_ctx > 0.3, ic_ctx
    assert abs(ic_own) < 0.08, ic_own


# ----------------------------------------------------------------------------- loading
def test_context_candles_load_beside_the_target_and_skip_it(tmp_path: Path) -> None:
    from huracan import stages
    from huracan.settings import DataSettings

    for pair, seed in (("BTCUSDT", 13), ("ETHUSDT", 14), ("LTCUSDT", 15)):
        _walk(300, seed=seed).to_parquet(tmp_path / f"spot_{pair}_1h.parquet")
    data = DataSettings(path=str(tmp_path / "spot_BTCUSDT_1h.parquet"), symbol="BTC/USDT",
                        timeframe="1h")
    cfg = FeatureConfig(context=["BTC/USDT", "ETH/USDT"])
    got = stages.context_candles(cfg, data, log_quality=False)
    assert list(got) == ["ETH/USDT"]  # the target skips itself
    eth = pd.read_parquet(tmp_path / "spot_ETHUSDT_1h.parquet")
    assert got["ETH/USDT"]["close"].to_numpy() == pytest.approx(eth["close"].to_numpy())
    # an explicit file wins over the derived one
    cfg = FeatureConfig(context=["ETH/USDT"],
                        context_paths={"ETH/USDT": str(tmp_path / "spot_LTCUSDT_1h.parquet")})
    ltc = pd.read_parquet(tmp_path / "spot_LTCUSDT_1h.parquet")
    got = stages.context_candles(cfg, data, log_quality=False)
    assert got["ETH/USDT"]["close"].to_numpy() == pytest.approx(ltc["close"].to_numpy())
    assert stages.context_candles(FeatureConfig(), data) == {}
    with pytest.raises(ValueError, match=r"SOL/USDT: candle file .* does not exist"):
        stages.context_candles(FeatureConfig(context=["SOL/USDT"]), data, log_quality=False)
