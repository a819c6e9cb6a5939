"""The GX suites on real files from ../shared/data and on corrupted copies of them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data_paths import FUNDING, LIQUIDATIONS, OPEN_INTEREST, SHARED, SPOT_1H, XRP_FUNDING
from typer.testing import CliRunner

from huracan.cli.data import validate_app
from huracan.data.ohlcv import DataValidationError, Gap
from huracan.data.validate import (
    EXPECTATIONS_DIR,
    SUITE_NAMES,
    DegradedDataError,
    ValidationConfig,
    build_suite,
    load_suite,
    validate_file,
    validate_for_training,
    validate_frame,
)

REAL_OHLCV = [
    "binance-spot_BTCUSDT_1h_20180101-20241231.parquet",
    "binance-spot_ETHUSDT_1h_20180101-20241231.parquet",
    "binance-spot_LTCUSDT_1h_20180101-20241231.parquet",
    "binance-usdm_BTCUSDT_1h_20190908-20241231.parquet",
    "binance-usdm_ETHUSDT_1h_20191127-20241231.parquet",
    "binance-usdm_LTCUSDT_1h_20200109-20241231.parquet",
    "binance-spot_BTCUSDT_5m_20240101-20240906.parquet",
    "binance-spot_BTCUSDT_1m_20240402-20240407.parquet",
    "ftx-perp_BTC-PERP_1m_20211231-20220201.parquet",
    "freqtrade_testdata/unknown-spot_ADABTC_5m_20180110-20180130.parquet",
    "freqtrade_testdata/binance-usdm_XRPUSDT_5m_20211115-20211121.parquet",
]


# ---- the suites ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", SUITE_NAMES)
def test_committed_suite_json_is_what_the_code_builds(name):
    path = EXPECTATIONS_DIR / f"{name}.json"
    assert path.exists(), "run `python -m huracan.data.validate --write-suites`"
    assert load_suite(path) == json.loads(json.dumps(build_suite(name))), (
        f"{path} is stale: run `python -m huracan.data.validate --write-suites`")


def test_suite_json_loads_as_a_gx_suite(runner):
    for name in SUITE_NAMES:
        suite = runner.gx_suite(load_suite(EXPECTATIONS_DIR / f"{name}.json"))
        assert suite.name == name
        assert len(suite.expectations) == len(build_suite(name)["expectations"])
        assert {str(e.severity.value) for e in suite.expectations} <= {"critical", "warning"}


def test_ohlcv_suite_holds_the_rules_of_the_issue():
    suite = build_suite("ohlcv")
    rules = {e["meta"]["rule"] for e in suite["expectations"]}
    assert {"missing_column", "numeric_type", "not_null", "unique_timestamp",
            "increasing_timestamp", "positive_price", "non_negative_volume", "high_ge_low",
            "high_ge_open_close", "low_le_open_close", "coverage"} <= rules
    assert {"timestamp_timezone", "on_timeframe_grid", "gap", "coverage"} <= set(
        suite["meta"]["huracan"]["checks"])


# ---- real files pass, with their known gaps reported exactly -------------------------------

@pytest.mark.parametrize("name", REAL_OHLCV)
def test_real_candle_files_pass(name, runner):
    path = SHARED / "ohlcv" / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    report = validate_file(path, "ohlcv", runner=runner)
    assert report.passed, report.lines()[:5]
    assert report.coverage is not None and report.coverage >= 0.95


def test_btc_spot_1h_reports_the_27_outages_exactly(runner, spot_1h):
    report = validate_file(SPOT_1H, "ohlcv", timeframe="1h", runner=runner)
    assert report.passed and report.rows == 61246
    assert len(report.gaps) == 27
    assert all(i.severity == "warning" for i in report.issues)
    # the longest outage: bars at 2018-02-08 00:00 and 2018-02-09 10:00 are 34 h apart, so the
    # 33 bars 01:00 .. 09:00 (next day) are missing
    longest = max(report.gaps, key=lambda g: g.bars_missing)
    assert longest == Gap(pd.Timestamp("2018-02-08 01:00", tz="UTC"),
                          pd.Timestamp("2018-02-09 09:00", tz="UTC"), 33)
    ts = spot_1h["timestamp"]
    assert ts[ts < longest.start].iloc[-1] == pd.Timestamp("2018-02-08 00:00", tz="UTC")
    assert ts[ts > longest.end].iloc[0] - ts[ts < longest.start].iloc[-1] == pd.Timedelta("34h")
    line = next(x for x in report.lines() if "2018-02-08 01:00" in x)
    assert "2018-02-09 09:00" in line and "33 1h bar(s) missing" in line and "[rule: gap" in line
    assert report.expected_bars == 61246 + sum(g.bars_missing for g in report.gaps)


@pytest.mark.parametrize("name", ["binance-spot_ADABTC_1m_20211127-20211128.parquet",
                                  "freqtrade_testdata/binance-spot_XRPETH_1m_20191011-20191013"
                                  ".parquet"])
def test_sparse_real_1m_files_fail_only_on_coverage(name, runner):
    path = SHARED / "ohlcv" / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    report = validate_file(path, "ohlcv", runner=runner)
    assert report.failed_rules == ["coverage"]
    loose = validate_file(path, "ohlcv", runner=runner,
                          config=ValidationConfig(coverage_threshold=0.0))
    assert loose.passed


def test_real_funding_oi_and_liquidation_files_pass(runner):
    for path, kind in ((FUNDING, "funding"), (XRP_FUNDING, "funding"),
                       (OPEN_INTEREST, "open-interest"), (LIQUIDATIONS, "liquidations")):
        report = validate_file(path, kind, runner=runner)
        assert report.passed, (path, report.lines()[:3])
    xrp = validate_file(XRP_FUNDING, "funding", runner=runner)  # 1-20 ms settlement jitter
    assert xrp.timeframe == "8h" and xrp.gaps == []


# ---- corrupted copies fail, naming the rule --------------------------------------------------

@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    if not SPOT_1H.exists():
        pytest.skip("shared data missing")
    return pd.read_parquet(SPOT_1H).iloc[:2000].reset_index(drop=True)


def _dup(df):
    return pd.concat([df.iloc[:101], df.iloc[100:]], ignore_index=True)


def _shuffle(df):
    return df.sample(frac=1.0, random_state=7).reset_index(drop=True)


def _nan_close(df):
    out = df.copy()
    out.loc[50, "close"] = np.nan
    return out


def _negative(df):
    out = df.copy()
    out.loc[60, "low"] = -5.0
    return out


def _high_below_low(df):
    out = df.copy()
    out.loc[70, "high"] = out.loc[70, "low"] - 1.0
    return out


def _drop_volume(df):
    return df.drop(columns=["volume"])


def _naive(df):
    return df.assign(timestamp=df["timestamp"].dt.tz_localize(None))


def _off_grid(df):
    out = df.copy()
    out.loc[80, "timestamp"] = out.loc[80, "timestamp"] + pd.Timedelta(minutes=30)
    return out


CORRUPTIONS = {
    "duplicated timestamps": (_dup, "unique_timestamp", "timestamp"),
    "shuffled order": (_shuffle, "increasing_timestamp", "timestamp"),
    "NaN close": (_nan_close, "not_null", "'close' row 50"),
    "negative price": (_negative, "positive_price", "'low' row 60"),
    "high < low": (_high_below_low, "high_ge_low", "row 70"),
    "missing column": (_drop_volume, "missing_column", "'volume'"),
    "naive timestamps": (_naive, "timestamp_timezone", "naive"),
    "off-grid timestamp": (_off_grid, "on_timeframe_grid", "row 80"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_copies_fail_naming_the_rule(case, candles, runner, tmp_path):
    corrupt, rule, where = CORRUPTIONS[case]
    path = tmp_path / "corrupt.parquet"
    corrupt(candles).to_parquet(path)
    report = validate_file(path, "ohlcv", timeframe="1h", runner=runner)
    assert not report.passed
    assert rule in report.failed_rules, report.lines()
    line = next(x for x in report.lines() if f"[rule: {rule}, critical]" in x)
    assert str(path) in line and where in line
    assert "\n" not in line


def test_nan_close_breaks_only_not_null(candles, runner):
    report = validate_frame(_nan_close(candles), "ohlcv", source="x", timeframe="1h",
                            runner=runner)
    assert report.failed_rules == ["not_null"]
    issue = report.critical[0]
    assert issue.details["column"] == "close" and issue.details["rows"] == [50]
    assert issue.details["timestamps"] == [str(candles.loc[50, "timestamp"])]


def test_window_reports_edge_gaps_and_low_coverage(candles, runner):
    part = candles.iloc[10:30]
    start, end = candles.loc[0, "timestamp"], candles.loc[40, "timestamp"]
    report = validate_frame(part, "ohlcv", source="batch", timeframe="1h", window=(start, end),
                            runner=runner)
    assert report.expected_bars == 40 and report.coverage == pytest.approx(20 / 40)
    assert report.gaps[0] == Gap(start, candles.loc[9, "timestamp"], 10)
    assert report.gaps[-1] == Gap(candles.loc[30, "timestamp"], candles.loc[39, "timestamp"], 10)
    assert report.failed_rules == ["coverage"]
    warn = validate_frame(part, "ohlcv", source="batch", timeframe="1h", window=(start, end),
                          runner=runner, config=ValidationConfig(coverage_severity="warning"))
    assert warn.passed and "coverage" in [i.issue_type for i in warn.warnings]


def test_funding_bounds(runner):
    df = pd.read_parquet(FUNDING).iloc[:50].reset_index(drop=True)
    unusual = df.copy()
    unusual.loc[3, "funding_rate"] = 0.02
    r = validate_frame(unusual, "funding", source="f", runner=runner)
    assert r.passed and [i.issue_type for i in r.warnings] == ["funding_rate_unusual"]
    percent = df.copy()
    percent.loc[4, "funding_rate"] = 1.5  # 1.5 meaning 1.5 %: a unit mix-up
    r = validate_frame(percent, "funding", source="f", runner=runner)
    assert "funding_rate_bounds" in r.failed_rules


def test_open_interest_rules(runner):
    oi = pd.read_parquet(OPEN_INTEREST).iloc[:30].reset_index(drop=True)
    r = validate_frame(oi.rename(columns={"open_interest_usd": "x"}), "open-interest",
                       source="oi", runner=runner)
    assert r.failed_rules == ["missing_column"]
    bad = oi.copy()
    bad.loc[5, "open_interest_usd"] = -1.0
    bad.loc[6, "open_interest_usd"] = np.nan
    r = validate_frame(bad, "open-interest", source="oi", runner=runner)
    assert set(r.failed_rules) == {"non_negative_open_interest", "has_value"}


def test_liquidation_rules(liquidation_events, runner):
    bad = liquidation_events.copy()
    bad.loc[3, "side"] = "UP"
    bad.loc[4, "quantity"] = 0.0
    r = validate_frame(bad, "liquidations", source="liq", runner=runner)
    assert set(r.failed_rules) == {"side_in_set", "positive_quantity"}
    (side,) = [x for x in r.lines() if "[rule: side_in_set" in x]
    assert side.startswith("liq: column 'side' row 3 (timestamp 2025-10-22 09:36:45.761000")
    assert "value(s) UP: " in side and side.endswith("[rule: side_in_set, critical]")


# ---- the training gate -----------------------------------------------------------------------

def test_validate_for_training(candles, runner, sink):
    issues = validate_for_training(candles, "1h", "file.parquet", "BTC/USDT", sink,
                                   runner=runner)
    assert [i.issue_type for i in issues] == ["gap", "gap"]  # 2018-01-04 and 2018-02-08/09
    holey = candles.drop(index=range(100, 400)).reset_index(drop=True)  # 85 % coverage
    with pytest.raises(DegradedDataError) as err:
        validate_for_training(holey, "1h", "file.parquet", "BTC/USDT", sink, runner=runner)
    assert isinstance(err.value, DataValidationError)
    msg = str(err.value)
    assert "\n" not in msg and "coverage" in msg and "data.allow_degraded=true" in msg
    assert msg.startswith("file.parquet: ")
    assert "coverage" in sink.types() and "gap" in sink.types()
    issues = validate_for_training(holey, "1h", "file.parquet", "BTC/USDT", None,
                                   allow_degraded=True, runner=runner)
    assert {i.issue_type for i in issues} == {"coverage", "gap"}


def test_findings_go_to_data_quality_logs(candles, runner, engine):
    from sqlalchemy import select

    from huracan.data.quality_db import DbQualitySink
    from huracan.db.tables import DataQualityLog

    report = validate_frame(_high_below_low(candles), "ohlcv", source="f.parquet",
                            symbol="BTC/USDT", timeframe="1h", sink=DbQualitySink(engine),
                            runner=runner)
    with engine.connect() as conn:
        rows = conn.execute(select(DataQualityLog)).all()
    assert len(rows) == len(report.issues) >= 2
    row = next(r for r in rows if r.issue_type == "high_ge_low")
    assert row.symbol == "BTC/USDT" and row.severity == "critical" and row.source == "f.parquet"
    assert row.details["rows"] == [70] and row.details["column"] == "high vs low"
    assert len(row.details["values"][0]) == 2  # (high, low) of the failing row


# ---- CLI -------------------------------------------------------------------------------------

def test_cli_validate_real_file_passes_and_lists_its_gaps():
    result = CliRunner().invoke(validate_app, ["ohlcv", str(SPOT_1H), "--timeframe", "1h"])
    assert result.exit_code == 0, result.output
    assert "2018-02-08 01:00:00+00:00 -> 2018-02-09 09:00:00+00:00" in result.output
    assert "27 gap(s)" in result.output and "PASS" in result.output


def test_cli_validate_corrupted_file_fails_listing_rules(candles, tmp_path):
    path = tmp_path / "bad.csv"
    _negative(_dup(candles)).to_csv(path, index=False)  # ISO text with +00:00 offsets
    result = CliRunner().invoke(validate_app, ["ohlcv", str(path)])
    assert result.exit_code == 1
    assert "failing rules:" in result.output
    assert "unique_timestamp" in result.output and "positive_price" in result.output


def test_cli_validate_unreadable_file_exits_2(tmp_path):
    result = CliRunner().invoke(validate_app, ["funding", str(tmp_path / "nope.parquet")])
    assert result.exit_code == 2 and "file not found" in result.output


def test_cli_validate_logs_to_the_database(engine, tmp_path, candles):
    path = tmp_path / "bad.parquet"
    _nan_close(candles).to_parquet(path)
    url = str(engine.url)
    result = CliRunner().invoke(validate_app, ["ohlcv", str(path), "--db-url", url,
                                               "--symbol", "BTC/USDT"])
    assert result.exit_code == 1
    from sqlalchemy import text

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM data_quality_logs WHERE issue_type = "
                                 "'not_null'")).scalar_one() == 1
