"""As-of joins and known-at rules on hand-made frames; coverage policy; the prefix (causality)
test of every family on a real window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huracan.features.asof import (
    KNOWN_AT,
    asof_join,
    assign_to_bars,
    bar_close_times,
    candle_known_at,
    daily_index_known_at,
    funding_known_at,
    liquidation_known_at,
    open_interest_known_at,
)
from huracan.features.families import (
    FamilyParams,
    build_family_features,
    coverage,
    expand_families,
    load_sources_from_files,
)

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SPOT_1H = SHARED_DATA / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"


def ts(*values: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def hourly(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1h", tz="UTC")


# --------------------------------------------------------------------------------------------
# asof_join
# --------------------------------------------------------------------------------------------

def test_funding_with_jitter_is_not_visible_before_it_happened():
    """08:00:00.005 is after the 07:00 bar's close (08:00:00): only the 08:00 bar sees it."""
    bars = hourly("2024-01-01 06:00", 3)  # 06:00, 07:00, 08:00
    funding = pd.DataFrame({"timestamp": ts("2024-01-01 00:00:00", "2024-01-01 08:00:00.005"),
                            "funding_rate": [0.0001, 0.0005]})
    got = asof_join(bars, "1h", funding_known_at(funding), ["funding_rate"])
    assert got["funding_rate"].tolist() == [0.0001, 0.0001, 0.0005]
    assert got.index.equals(bars) and got.index.name == "timestamp"


def test_funding_stamped_exactly_at_the_close_is_visible_to_that_bar():
    bars = hourly("2024-01-01 06:00", 3)
    funding = pd.DataFrame({"timestamp": ts("2024-01-01 00:00", "2024-01-01 08:00:00"),
                            "funding_rate": [0.0001, 0.0005]})
    got = asof_join(bars, "1h", funding_known_at(funding), ["funding_rate"])
    assert got["funding_rate"].tolist() == [0.0001, 0.0005, 0.0005]  # 07:00 bar closes at 08:00


def test_max_age_drops_stale_values_fixed_and_per_row():
    bars = hourly("2024-01-01 00:00", 20)
    vals = pd.DataFrame({KNOWN_AT: ts("2024-01-01 00:00", "2024-01-01 08:00"),
                         "x": [1.0, 2.0],
                         "limit": pd.to_timedelta(["16h", "3h"])})
    fixed = asof_join(bars, "1h", vals, ["x"], pd.Timedelta("4h"))
    # bar 03:00 closes 04:00: age 4h == max_age -> fresh; bar 04:00 (age 5h) -> stale
    assert fixed.loc["2024-01-01 03:00", "x"] == 1.0
    assert np.isnan(fixed.loc["2024-01-01 04:00", "x"])
    assert fixed.loc["2024-01-01 11:00", "x"] == 2.0 and np.isnan(fixed.loc["2024-01-01 12:00",
                                                                            "x"])
    per_row = asof_join(bars, "1h", vals, ["x"], "limit")
    assert per_row.loc["2024-01-01 06:00", "x"] == 1.0  # age 7h <= 16h
    assert per_row.loc["2024-01-01 10:00", "x"] == 2.0  # age 3h <= 3h
    assert np.isnan(per_row.loc["2024-01-01 11:00", "x"])  # age 4h > 3h


def test_per_row_limit_nat_means_stale():
    vals = pd.DataFrame({KNOWN_AT: ts("2024-01-01 00:00"), "x": [1.0],
                         "limit": pd.to_timedelta([pd.NaT])})
    got = asof_join(hourly("2024-01-01 00:00", 2), "1h", vals, ["x"], "limit")
    assert got["x"].isna().all()


def test_rows_join_whole_and_ties_keep_the_last():
    # any order; of the two rows known at 02:00 the later one in the frame (x=3) wins
    vals = pd.DataFrame({KNOWN_AT: ts("2024-01-01 03:00", "2024-01-01 02:00", "2024-01-01 01:00",
                                      "2024-01-01 02:00"),
                         "x": [np.nan, 2.0, 1.0, 3.0]})
    got = asof_join(hourly("2024-01-01 00:00", 4), "1h", vals, ["x"], keep_known_at=True)
    assert got["x"].iloc[:2].tolist() == [1.0, 3.0]
    assert np.isnan(got["x"].iloc[2])  # the latest row has NaN: no fallback to older rows
    assert got[KNOWN_AT].iloc[1] == pd.Timestamp("2024-01-01 02:00", tz="UTC")


def test_join_at_open():
    vals = pd.DataFrame({KNOWN_AT: ts("2024-01-02 00:00"), "x": [5.0]})
    bars = hourly("2024-01-01 23:00", 2)
    at_close = asof_join(bars, "1h", vals, ["x"])
    at_open = asof_join(bars, "1h", vals, ["x"], at="open")
    assert at_close["x"].tolist() == [5.0, 5.0]
    assert np.isnan(at_open["x"].iloc[0]) and at_open["x"].iloc[1] == 5.0


def test_asof_join_equals_a_brute_force_reference():
    rng = np.random.default_rng(7)
    bars = pd.date_range("2024-01-01", periods=300, freq="5min", tz="UTC")
    bars = bars[np.sort(rng.choice(300, 220, replace=False))]  # gaps
    known = pd.Timestamp("2023-12-31 23:00", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 26 * 3600 * 1000, 150), unit="ms")
    vals = pd.DataFrame({KNOWN_AT: known, "x": rng.normal(size=150)})
    got = asof_join(bars, "5min", vals, ["x"], "20min")["x"].to_numpy()
    order = vals.sort_values(KNOWN_AT, kind="stable")
    for i, b in enumerate(bars):
        close = b + pd.Timedelta("5min")
        seen = order[order[KNOWN_AT] <= close]
        if seen.empty or close - seen[KNOWN_AT].iloc[-1] > pd.Timedelta("20min"):
            assert np.isnan(got[i])
        else:
            assert got[i] == seen["x"].iloc[-1]


@pytest.mark.parametrize("case,match", [
    ("missing_column", r"missing column\(s\) \['funding_rate'\].*required_columns"),
    ("naive_known_at", r"'known_at' holds naive.*utc_timestamps"),
    ("nat_known_at", r"'known_at' has missing timestamps.*not_null"),
    ("unsorted_bars", r"not after the previous bar.*strictly_increasing"),
])
def test_bad_input_names_the_column_and_rule(case, match):
    bars = hourly("2024-01-01", 3)
    vals = pd.DataFrame({KNOWN_AT: ts("2024-01-01 00:00", "2024-01-01 01:00"), "x": [1.0, 2.0]})
    cols = ["x"]
    if case == "missing_column":
        cols = ["funding_rate"]
    elif case == "naive_known_at":
        vals[KNOWN_AT] = vals[KNOWN_AT].dt.tz_localize(None)
    elif case == "nat_known_at":
        vals.loc[1, KNOWN_AT] = pd.NaT
    else:
        bars = bars[[0, 2, 1]]
    with pytest.raises(ValueError, match=match):
        asof_join(bars, "1h", vals, cols)


def test_negative_max_age_is_refused():
    vals = pd.DataFrame({KNOWN_AT: ts("2024-01-01 00:00"), "x": [1.0]})
    with pytest.raises(ValueError, match="negative"):
        asof_join(hourly("2024-01-01", 2), "1h", vals, ["x"], "-1h")


# --------------------------------------------------------------------------------------------
# known-at helpers and bar assignment
# --------------------------------------------------------------------------------------------

def test_known_at_helpers():
    frame = pd.DataFrame({"timestamp": ts("2024-01-01 00:00", "2024-01-02 00:00"), "v": [1, 2]})
    assert funding_known_at(frame)[KNOWN_AT].equals(frame["timestamp"].dt.as_unit("ns"))
    assert (open_interest_known_at(frame, "1D")[KNOWN_AT]
            == frame["timestamp"] + pd.Timedelta("1D")).all()
    assert (candle_known_at(frame, "1h")[KNOWN_AT] == frame["timestamp"]
            + pd.Timedelta("1h")).all()
    assert (liquidation_known_at(frame)[KNOWN_AT] == frame["timestamp"]).all()
    assert (daily_index_known_at(frame)[KNOWN_AT] == frame["timestamp"] + pd.Timedelta("1D")).all()
    stated = frame.assign(known_at=ts("2024-01-05", "2024-01-06"))
    assert (funding_known_at(stated)[KNOWN_AT] == stated[KNOWN_AT]).all()  # kept as given
    assert "known_at" not in frame.columns  # inputs are not modified


def test_daily_index_must_be_stamped_at_day_start():
    frame = pd.DataFrame({"timestamp": ts("2024-01-01 00:00", "2024-01-02 06:00"), "v": [1, 2]})
    with pytest.raises(ValueError, match=r"row 1 .* not a UTC day start.*daily_day_start"):
        daily_index_known_at(frame)


def test_events_go_to_the_first_bar_whose_close_is_at_or_after_them():
    bars = hourly("2024-01-01 00:00", 3)  # closes 01:00, 02:00, 03:00
    events = ts("2024-01-01 00:00:00.001", "2024-01-01 01:00", "2024-01-01 01:00:00.001",
                "2024-01-01 03:00", "2024-01-01 03:00:00.001", "2023-12-31 23:30")
    got = assign_to_bars(events, bars, "1h")
    expected = ts("2024-01-01 00:00", "2024-01-01 00:00", "2024-01-01 01:00",
                  "2024-01-01 02:00")
    assert list(got[:4]) == list(expected)
    assert pd.isna(got[4])  # after the last close
    assert got[5] == bars[0]  # visible at the first close (before the grid: first bar)
    holes = bars[[0, 2]]  # 01:00 missing: its events show up at the 02:00 bar's close
    assert assign_to_bars(ts("2024-01-01 01:30"), holes, "1h")[0] == bars[2]
    assert list(bar_close_times(bars, "1h")) == list(bars + pd.Timedelta("1h"))


# --------------------------------------------------------------------------------------------
# coverage policy
# --------------------------------------------------------------------------------------------

def test_coverage_share_of_bars_with_a_fresh_value():
    bars = hourly("2024-01-01 00:00", 10)  # closes 01:00 .. 10:00
    known = ts("2024-01-01 02:00", "2024-01-01 06:00")
    assert coverage(known, bars, timeframe="1h") == pytest.approx(9 / 10)
    # fresh = age <= 2h at the close: closes 02-04 and 06-08 -> 6 of 10
    assert coverage(known, bars, timeframe="1h", max_age="2h") == pytest.approx(6 / 10)
    assert coverage(known, bars + pd.Timedelta("1h")) == pytest.approx(9 / 10)  # instants
    assert coverage(ts(), bars, timeframe="1h") == 0.0
    with pytest.raises(ValueError, match="no bars"):
        coverage(known, ts())


def test_missing_sources_give_nan_and_a_zero_flag_never_zero():
    bars = pd.DataFrame({"timestamp": hourly("2024-01-01", 48), "close": 100.0})
    out = build_family_features(bars, "1h", {}, ["derivatives", "liquidations", "sentiment",
                                                 "headlines"])
    assert out.coverage == {f: 0.0 for f in ("funding", "basis", "open_interest",
                                             "liquidations", "sentiment", "headlines")}
    assert out.frame[out.feature_names].isna().all().all()
    assert (out.frame[list(out.flags.values())] == 0).all().all()
    assert list(out.flags.values()) == [f"{f}_available" for f in out.flags]


def test_family_names_and_params_are_checked():
    assert expand_families(["derivatives", "funding", "sentiment"]) == [
        "funding", "basis", "open_interest", "sentiment"]
    with pytest.raises(ValueError, match="price"):
        expand_families(["price"])
    with pytest.raises(ValueError, match="unknown feature family 'news'"):
        expand_families(["news"])
    bars = pd.DataFrame({"timestamp": hourly("2024-01-01", 4), "close": 1.0})
    with pytest.raises(ValueError, match="unknown source key"):
        build_family_features(bars, "1h", {"fundings": None}, ["funding"])
    with pytest.raises(ValueError, match="unknown family parameter"):
        FamilyParams.from_mapping({"funding_window": 3})


# --------------------------------------------------------------------------------------------
# the prefix test: every family on a real window
# --------------------------------------------------------------------------------------------

def _synthetic_liquidations(rng: np.random.Generator, start: pd.Timestamp, end: pd.Timestamp
                            ) -> pd.DataFrame:
    """Seeded random events with bursts (so that cascades occur), in the store's format."""
    span = (end - start).value
    n = 6000
    times = start.value + np.sort(rng.integers(0, span, n))
    bursts = start.value + rng.integers(0, span, 40)
    burst_times = (bursts[:, None] + rng.integers(0, 240 * 10**9, (40, 15))).ravel()
    t = np.sort(np.concatenate([times, burst_times]))
    m = len(t)
    price = 30_000.0 * np.exp(rng.normal(0, 0.01, m).cumsum() / 10)
    qty = rng.lognormal(-1.5, 1.5, m)
    return pd.DataFrame({"timestamp": pd.to_datetime(t, utc=True),
                         "side": rng.choice(["long", "short"], m),
                         "price": price, "quantity": qty, "size_usd": price * qty})


def _synthetic_minutes(rng: np.random.Generator, start: pd.Timestamp, end: pd.Timestamp
                       ) -> pd.DataFrame:
    opens = pd.date_range(start, end, freq="1min", inclusive="left")
    close = 30_000.0 * np.exp(rng.normal(0, 0.001, len(opens)).cumsum())
    return pd.DataFrame({"timestamp": opens, "close": close})


def _known_at(key: str, frame: pd.DataFrame) -> pd.Series:
    """Known-at of each source row (the conventions of huracan.features.asof)."""
    t = pd.to_datetime(frame["timestamp"], utc=True)
    if KNOWN_AT in frame.columns:
        return pd.to_datetime(frame[KNOWN_AT], utc=True)
    offsets = {"mark": "1h", "candles_1m": "1min", "sentiment": "1D"}
    return t + pd.Timedelta(offsets.get(key, "0s"))


@pytest.fixture(scope="module")
def real_window():
    if not SPOT_1H.exists():
        pytest.skip(f"{SPOT_1H} not found (../shared/data is expected beside the checkout)")
    spot = pd.read_parquet(SPOT_1H)
    bars = spot[(spot.timestamp >= "2021-01-01") & (spot.timestamp < "2021-04-01")]
    start, end = pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2021-04-01", tz="UTC")
    sources = load_sources_from_files(SHARED_DATA, "BTC/USDT", start, end)
    rng = np.random.default_rng(20210101)
    sources["liquidations"] = _synthetic_liquidations(rng, start - pd.Timedelta("3D"), end)
    sources.pop("liquidations_coverage")  # the real sample is from 2025: use the synthetic one
    sources["candles_1m"] = _synthetic_minutes(rng, start - pd.Timedelta("3D"), end)
    return bars.reset_index(drop=True), sources


FAMILIES = ["derivatives", "liquidations", "sentiment"]


def test_real_window_is_covered(real_window):
    bars, sources = real_window
    out = build_family_features(bars, "1h", sources, FAMILIES)
    for fam in ("funding", "basis", "open_interest", "sentiment", "liquidations"):
        assert out.coverage[fam] > 0.95, (fam, out.coverage)
    assert out.frame["cascade_indicator"].sum() > 0
    assert out.frame["post_liquidation_momentum"].notna().mean() > 0.95
    # a feature is NaN wherever its family flag is 0
    for fam, flag in out.flags.items():
        off = out.frame[flag] == 0
        cols = {"funding": ["funding_rate"], "basis": ["basis"], "open_interest": ["oi_z_30d"],
                "liquidations": ["liquidation_momentum_1h"], "sentiment": ["fear_greed"]}[fam]
        assert out.frame.loc[off, cols].isna().all().all()


def test_features_from_truncated_data_equal_the_prefix_of_features(real_window):
    """For random bars t (seeded): drop every source row not known at t's close and every bar
    after t; the features of bars <= t must not change."""
    bars, sources = real_window
    full = build_family_features(bars, "1h", sources, FAMILIES).frame
    rng = np.random.default_rng(12345)
    picks = sorted({*rng.integers(0, len(bars), 6).tolist(), len(bars) - 2, 30})
    for t in picks:
        close = pd.Timestamp(bars["timestamp"].iloc[t]) + pd.Timedelta("1h")
        cut = {}
        for key, frame in sources.items():
            cut[key] = frame.loc[(_known_at(key, frame) <= close).to_numpy()]
        part = build_family_features(bars.iloc[: t + 1], "1h", cut, FAMILIES).frame
        assert len(part) == t + 1
        pd.testing.assert_frame_equal(part, full.iloc[: t + 1], check_exact=False, rtol=1e-9,
                                      atol=1e-12, obj=f"features truncated at bar {t}")


def test_future_rows_change_nothing_before_they_are_known(real_window):
    """Perturb every source value known after a bar's close: that bar's features must not move
    (a leak of even one row would show)."""
    bars, sources = real_window
    full = build_family_features(bars, "1h", sources, FAMILIES).frame
    t = 1000
    close = pd.Timestamp(bars["timestamp"].iloc[t]) + pd.Timedelta("1h")
    rng = np.random.default_rng(99)
    noisy = {}
    for key, frame in sources.items():
        later = (_known_at(key, frame) > close).to_numpy()
        f = frame.copy()
        for col in ("funding_rate", "close", "open_interest_usd", "size_usd", "value"):
            if col in f.columns:
                f[col] = f[col].astype("float64")
                scale = rng.uniform(0.5, 1.5, later.sum())
                vals = f.loc[later, col] * scale
                if col == "value":
                    vals = vals.clip(0, 100)
                f.loc[later, col] = vals
        noisy[key] = f
    moved = build_family_features(bars, "1h", noisy, FAMILIES).frame
    pd.testing.assert_frame_equal(moved.iloc[: t + 1], full.iloc[: t + 1])
