"""Liquidation features on hand-made events; cascade detection; causality bar by bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huracan.features.liquidations import (
    detect_cascades,
    liquidation_columns,
    liquidation_features,
    minute_aggregates_to_events,
    normalize_liquidations,
    post_liquidation_moves,
)

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
EVENTS_FILE = (SHARED_DATA / "liquidations"
               / "binance-usdm_ALL_liquidation-events_20251022-20251022.parquet")
AGG_FILE = (SHARED_DATA / "liquidations"
            / "binance-usdm_30sym_liquidations-1min-agg_20241210-20241210.parquet")
COVERED = ("2023-12-30T00:00Z", None)


def events(*rows: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": pd.to_datetime([r[0] for r in rows], utc=True, format="ISO8601"),
        "side": [r[1] for r in rows], "size_usd": [r[2] for r in rows]})


def hourly(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1h", tz="UTC")


# --------------------------------------------------------------------------------------------
# input rules
# --------------------------------------------------------------------------------------------

def test_order_sides_become_positions_and_usd_defaults_to_price_times_quantity():
    raw = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01 00:00:01", "2024-01-01 00:00:00"],
                                                    utc=True),
                        "side": ["SELL", "buy"], "price": [100.0, 50.0], "quantity": [2.0, 1.0]})
    ev = normalize_liquidations(raw)
    assert ev["side"].tolist() == ["short", "long"]  # time order; SELL = a long force-sold
    assert ev["usd"].tolist() == [50.0, 200.0] and ev["count"].tolist() == [1, 1]


@pytest.mark.parametrize("change,match", [
    ({"side": ["up"]}, r"column 'side' row 0: 'up'.*known_side"),
    ({"size_usd": [-1.0]}, r"size_usd row 0.*non_negative_usd"),
    ({"size_usd": [np.nan]}, r"size_usd row 0.*non_negative_usd"),
])
def test_bad_events_name_column_and_rule(change, match):
    raw = events(("2024-01-01 00:00", "long", 1.0)).assign(**change)
    with pytest.raises(ValueError, match=match):
        normalize_liquidations(raw)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="required_columns"):
        normalize_liquidations(pd.DataFrame({"timestamp": [], "usd": []}))
    with pytest.raises(ValueError, match=r"size_usd.*required_columns"):
        normalize_liquidations(pd.DataFrame({"timestamp": pd.to_datetime([], utc=True),
                                             "side": []}))


# --------------------------------------------------------------------------------------------
# cascades
# --------------------------------------------------------------------------------------------

def test_cascades_by_count_and_by_usd():
    ev = events(
        ("2024-01-01 10:00:00", "long", 10.0), ("2024-01-01 10:01:00", "long", 10.0),
        ("2024-01-01 10:02:00", "long", 10.0), ("2024-01-01 10:03:00", "long", 10.0),
        ("2024-01-01 10:00:30", "short", 10.0), ("2024-01-01 10:01:30", "short", 10.0),
        ("2024-01-01 10:20:00", "long", 10.0),
        ("2024-01-01 10:30:00", "long", 10.0), ("2024-01-01 10:34:00", "long", 10.0),
        ("2024-01-01 10:38:30", "long", 10.0),
        ("2024-01-01 11:00:00", "short", 2_000_000.0))
    got = detect_cascades(ev, "5min", min_events=3, min_usd=1_000_000, by=("side",))
    e = got.events.sort_index()
    assert e["liquidation_type"].tolist() == ["cascade"] * 4 + ["single"] * 6 + ["cascade"]
    # trigger is causal: the 3rd event completes the first window, the 1st and 2nd do not
    assert e["trigger"].tolist() == [False, False, True, True] + [False] * 6 + [True]
    iv = got.intervals
    assert iv[["side", "n_events"]].values.tolist() == [["long", 4], ["short", 1]]
    assert iv["start"].iloc[0] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert iv["end"].iloc[0] == pd.Timestamp("2024-01-01 10:03", tz="UTC")
    assert iv["detected_at"].iloc[0] == pd.Timestamp("2024-01-01 10:02", tz="UTC")
    assert iv["usd"].tolist() == [40.0, 2_000_000.0]
    assert e["cascade_id"].tolist() == [0, 0, 0, 0] + [-1] * 6 + [1]
    assert iv[["long_usd", "short_usd"]].values.tolist() == [[40.0, 0.0], [0.0, 2_000_000.0]]
    # default: both sides of one stream together, so the short events join the first burst
    both = detect_cascades(ev, "5min", min_events=3, min_usd=1_000_000)
    # time order 10:00 L, 10:00:30 S, 10:01 L (3rd: trigger), 10:01:30 S, 10:02 L, 10:03 L
    assert both.events.sort_index()["trigger"].tolist() == [
        False, True, True, True, False, True] + [False] * 4 + [True]
    assert both.intervals["n_events"].tolist() == [6, 1]
    assert "side" not in both.intervals.columns


def test_cascade_windows_merge_only_when_they_share_an_event():
    t0 = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    apart = [0, 60, 120, 360, 420, 480]  # seconds: two runs of three, 4 minutes apart
    joined = [3600, 3660, 3720, 3840, 3990]  # 13:00, :01, :02, :04, :06:30 -> one cascade
    ev = pd.DataFrame({"timestamp": [t0 + pd.Timedelta(seconds=s) for s in apart + joined],
                       "side": "long", "usd": 1.0})
    iv = detect_cascades(ev, "5min", min_events=3, min_usd=None).intervals
    assert iv["n_events"].tolist() == [3, 3, 5]
    assert iv["end"].iloc[2] == t0 + pd.Timedelta(seconds=3990)


def test_cascade_window_is_half_open_and_counts_simultaneous_events():
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    ev = pd.DataFrame({"timestamp": [t0, t0 + pd.Timedelta("5min"), t0 + pd.Timedelta("5min")],
                       "side": "long", "usd": 1.0})
    got = detect_cascades(ev, "5min", min_events=3, min_usd=None)
    assert not got.events["trigger"].any()  # (t - 5min, t] excludes the event at t0
    got = detect_cascades(ev, "5min", min_events=2, min_usd=None)
    assert got.events["trigger"].tolist() == [False, True, True]
    both = detect_cascades(ev.assign(side=["long", "short", "long"]), "5min", min_events=3,
                           min_usd=None, by=())
    assert not both.events["trigger"].any()


def test_cascade_parameters_are_checked():
    ev = events(("2024-01-01", "long", 1.0))
    with pytest.raises(ValueError, match="both are None"):
        detect_cascades(ev, min_events=None, min_usd=None)
    with pytest.raises(ValueError, match="min_events"):
        detect_cascades(ev, min_events=0)
    with pytest.raises(ValueError, match="window must be positive"):
        detect_cascades(ev, window="0s")


def test_real_binance_events_and_minute_buckets():
    if not EVENTS_FILE.exists():
        pytest.skip(f"{EVENTS_FILE} not found")
    raw = pd.read_parquet(EVENTS_FILE)
    ev = normalize_liquidations(raw)
    assert ev["side"].value_counts().to_dict() == {
        "long": int((raw.side == "SELL").sum()), "short": int((raw.side == "BUY").sum())}
    assert ev["usd"].sum() == pytest.approx(raw["usd_value"].sum())
    got = detect_cascades(raw, "5min", min_events=20, min_usd=None)
    assert len(got.events) == len(raw) and set(got.events["liquidation_type"]) <= {
        "cascade", "single"}
    agg = pd.read_parquet(AGG_FILE)
    btc = agg[agg.symbol == "BTCUSDT"]
    pseudo = minute_aggregates_to_events(agg, "BTCUSDT")
    assert pseudo["usd"].sum() == pytest.approx(btc.liq_buy_usd.sum() + btc.liq_sell_usd.sum())
    assert pseudo.loc[pseudo.side == "long", "count"].sum() == btc.liq_sell_count.sum()


# --------------------------------------------------------------------------------------------
# bar features
# --------------------------------------------------------------------------------------------

HAND = events(("2024-01-01 00:30", "long", 100.0),
              ("2024-01-01 01:00", "short", 50.0),  # exactly at bar 00:00's close
              ("2024-01-01 01:00:00.001", "long", 30.0),
              ("2024-01-01 02:59", "short", 20.0))


def test_bar_features_by_hand():
    out = liquidation_features(HAND, hourly("2024-01-01", 4), "1h", windows=("1h", "2h"),
                               density_window=2, coverage=COVERED)
    assert list(out.columns) == [*liquidation_columns(("1h", "2h")), "liquidations_available"]
    assert out["liquidation_momentum_1h"].tolist() == [150.0, 30.0, 20.0, 0.0]
    assert out["liquidation_momentum_2h"].tolist() == [150.0, 180.0, 50.0, 20.0]
    np.testing.assert_allclose(out["liquidation_imbalance"], [50 / 150, 1.0, -1.0, 0.0])
    assert out["cumulative_liquidation_delta"].tolist() == [50.0, 80.0, 60.0, 60.0]
    dens = out["liquidation_density"].to_numpy()
    assert np.isnan(dens[0])  # 2-bar window not full yet
    np.testing.assert_allclose(dens[1:], [30 / 90, 20 / 25, 0.0])
    assert out["cascade_indicator"].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert out["liquidations_available"].tolist() == [1, 1, 1, 1]


def test_default_names_and_cascade_indicator():
    burst = events(*[(f"2024-01-01 02:1{i}", "long", 1.0) for i in range(4)])
    out = liquidation_features(pd.concat([HAND, burst]), hourly("2024-01-01", 4), "1h",
                               cascade_min_events=3, cascade_min_usd=None, coverage=COVERED)
    assert [c for c in out.columns if "momentum" in c] == [
        "liquidation_momentum_1h", "liquidation_momentum_4h", "liquidation_momentum_24h"]
    assert out["cascade_indicator"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_uncovered_bars_are_nan_with_a_zero_flag():
    bars = hourly("2024-01-01", 6)
    # default coverage: from the first event (00:30) on, so the 00:00 bar is not covered
    out = liquidation_features(HAND, bars, "1h", windows=("1h", "2h"))
    assert out["liquidations_available"].tolist() == [0, 1, 1, 1, 1, 1]
    assert out.loc[bars[0]].drop("liquidations_available").isna().all()
    assert np.isnan(out["liquidation_momentum_2h"].iloc[1])  # window (00:00, 02:00] uncovered
    assert out["liquidation_momentum_1h"].iloc[1] == 30.0
    assert out["cumulative_liquidation_delta"].iloc[1] == 80.0  # from the coverage start
    # collector stopped at 03:00; or: nothing seen for 2 h means it is dead
    end = liquidation_features(HAND, bars, "1h", coverage=(COVERED[0], "2024-01-01T03:00Z"))
    assert end["liquidations_available"].tolist() == [1, 1, 1, 0, 0, 0]
    silent = liquidation_features(HAND, bars, "1h", coverage=COVERED, max_silence="2h")
    # last events 01:00:00.001 and 02:59 -> closes 04:00 (1h01 silent) ok, 05:00 (2h01) not
    assert silent["liquidations_available"].tolist() == [1, 1, 1, 1, 0, 0]
    none = liquidation_features(None, bars, "1h")
    assert none.drop(columns="liquidations_available").isna().all().all()
    assert (none["liquidations_available"] == 0).all()


def test_bars_with_holes_read_the_complete_grid():
    bars = hourly("2024-01-01", 4)[[0, 2, 3]]  # the 01:00 bar is missing
    out = liquidation_features(HAND, bars, "1h", windows=("1h",), density_window=1,
                               coverage=COVERED)
    assert out["liquidation_momentum_1h"].tolist() == [150.0, 20.0, 0.0]  # 01:00's 30 not moved
    assert out.index.equals(bars)


def minute_candles(start: str, n: int, drift: float = 0.001) -> pd.DataFrame:
    opens = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({"timestamp": opens, "close": 100.0 * np.exp(drift * np.arange(n))})


def test_post_liquidation_momentum_by_hand():
    candles = minute_candles("2024-01-01 00:00", 120)
    ev = events(("2024-01-01 00:10:30", "long", 200_000.0),
                ("2024-01-01 00:12:00", "short", 50_000.0))  # below large_usd: ignored
    moves = post_liquidation_moves(ev, candles, large_usd=100_000)
    assert len(moves) == 1
    assert moves["move"].iloc[0] == pytest.approx(0.005)  # candles 00:10 -> 00:15, 5 × 0.001
    assert moves["known_at"].iloc[0] == pd.Timestamp("2024-01-01 00:16", tz="UTC")
    bars = pd.date_range("2024-01-01 00:05", periods=4, freq="5min", tz="UTC")
    out = liquidation_features(ev, bars, "5min", windows=("5min",), coverage=("2024-01-01T00:00Z",
                               None), candles_1m=candles, large_usd=100_000)
    # bar 00:10 closes 00:15 (follow-up not complete); bar 00:15 closes 00:20 (known 00:16)
    assert out["post_liquidation_momentum"].tolist() == pytest.approx([0.0, 0.0, 0.005, 0.0])
    short = liquidation_features(ev, bars, "5min", windows=("5min",),
                                 coverage=("2024-01-01T00:00Z", None),
                                 candles_1m=candles.iloc[:17], large_usd=100_000)
    assert np.isnan(short["post_liquidation_momentum"].iloc[3])  # candles end at 00:17


def test_features_are_causal_at_every_bar():
    """Seeded dense events (many large ones) and 1-minute candles: for EVERY bar t, features from
    the events known at t's close and the candles closed by then equal the full run's row t."""
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    n = 2500
    t = start + pd.to_timedelta(np.sort(rng.integers(0, 2 * 86400, n)), unit="s")
    ev = pd.DataFrame({"timestamp": t, "side": rng.choice(["long", "short"], n),
                       "size_usd": rng.lognormal(11, 1.2, n)})
    candles = minute_candles("2024-02-29 23:00", 3000, 0.0)
    candles["close"] = 100 * np.exp(rng.normal(0, 0.002, len(candles)).cumsum())
    bars = pd.date_range("2024-03-01 00:00", periods=100, freq="15min", tz="UTC")
    kwargs = dict(windows=("15min", "1h", "6h"), density_window=8, cascade_min_events=6,
                  cascade_min_usd=400_000, candles_1m=candles, large_usd=100_000)
    full = liquidation_features(ev, bars, "15min", **kwargs)
    assert full["cascade_indicator"].sum() > 5
    assert (full["post_liquidation_momentum"].fillna(0) != 0).sum() > 30
    for i, b in enumerate(bars):
        close = b + pd.Timedelta("15min")
        part = liquidation_features(
            ev[ev.timestamp <= close], bars[: i + 1], "15min",
            **{**kwargs, "candles_1m": candles[candles.timestamp + pd.Timedelta("1min") <= close]})
        pd.testing.assert_frame_equal(part, full.iloc[: i + 1], obj=f"bar {i}")
