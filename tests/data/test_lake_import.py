"""``huracan lake import|list|compact`` and :func:`import_candles` on real Binance candles from
../shared/data: validation before storing, only new bars appended, bad files refused with one
line and the lake untouched, findings in data_quality_logs."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from huracan.cli.lake import lake_app
from huracan.data.lake import CandleLake
from huracan.data.lake_import import import_candles
from huracan.data.ohlcv import DataValidationError

SERIES = ("binance", "BTC/USDT", "1h")


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(lake_app, list(args), env=env)


@pytest.fixture
def january(spot_1h) -> pd.DataFrame:
    """2024-01-01 .. 2024-01-14 23:00, 336 real hourly bars (no exchange gap)."""
    ts = spot_1h.timestamp
    return spot_1h[(ts >= "2024-01-01") & (ts < "2024-01-15")].reset_index(drop=True)


@pytest.fixture
def files(tmp_path, january) -> dict[str, str]:
    out = {}
    january.iloc[:240].to_parquet(out.setdefault("first", str(tmp_path / "first.parquet")))
    # a CSV (ISO 8601 text with offset) overlapping the first file by 40 bars
    january.iloc[200:].to_csv(out.setdefault("csv", str(tmp_path / "later.csv")), index=False)
    dup = pd.concat([january.iloc[:100], january.iloc[[50]]]).sort_values(
        "timestamp", kind="stable")
    dup.to_parquet(out.setdefault("dup", str(tmp_path / "dup.parquet")))
    january.drop(columns="volume").to_parquet(out.setdefault("novol",
                                                             str(tmp_path / "novol.parquet")))
    return out


def _import(path: str, lake: str, *extra: str, env: dict[str, str] | None = None):
    lake_opt = ["--lake", lake] if lake else []
    return invoke("import", path, "--exchange", "binance", "--symbol", "BTC/USDT",
                  "--timeframe", "1h", *lake_opt, *extra, env=env)


def test_import_then_import_again_writes_nothing(tmp_path, files, january):
    lake = str(tmp_path / "lake")
    first = _import(files["first"], lake)
    assert first.exit_code == 0, first.output
    assert "read 240 row(s), wrote 240 new, skipped 0 already stored" in first.stdout
    assert "-> PASS" in first.stdout and first.stderr == ""
    pd.testing.assert_frame_equal(CandleLake(lake).read(*SERIES), january.iloc[:240])
    again = _import(files["first"], lake)
    assert again.exit_code == 0, again.output
    assert "read 240 row(s), wrote 0 new, skipped 240 already stored" in again.stdout
    assert len(CandleLake(lake).parts(*SERIES)) == 1


def test_csv_appends_only_the_new_bars_into_the_lake_named_by_the_environment(
        tmp_path, files, january):
    lake = str(tmp_path / "env-lake")
    assert _import(files["first"], "", env={"HURACAN_LAKE": lake}).exit_code == 0
    res = _import(files["csv"], "", env={"HURACAN_LAKE": lake})
    assert res.exit_code == 0, res.output
    assert "read 136 row(s), wrote 96 new, skipped 40 already stored" in res.stdout
    pd.testing.assert_frame_equal(CandleLake(lake).read(*SERIES), january)
    listing = invoke("list", env={"HURACAN_LAKE": lake})
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["exchange", "symbol", "timeframe", "parts", "rows", "first",
                                "last"]
    assert lines[1].split() == ["binance", "BTC/USDT", "1h", "2", "336", "2024-01-01", "00:00",
                                "2024-01-14", "23:00"]
    compacted = invoke("compact", env={"HURACAN_LAKE": lake})
    assert compacted.exit_code == 0 and "2 part(s) -> part-20240101T0000-20240114T2300" in (
        compacted.stdout)
    assert len(CandleLake(lake).parts(*SERIES)) == 1
    pd.testing.assert_frame_equal(CandleLake(lake).read(*SERIES), january)


def test_duplicate_timestamp_is_refused_and_logged(tmp_path, files, engine):
    from huracan.db.tables import DataQualityLog

    lake = tmp_path / "lake"
    db = str(engine.url)
    res = _import(files["dup"], str(lake), "--db-url", db)
    assert res.exit_code == 1
    errors = res.stderr.strip().splitlines()
    # one line per failing rule, naming file, column, row and rule; then the verdict
    assert errors[:2] == [
        f"{files['dup']}: column 'timestamp' row 50: value(s) 2024-01-03 02:00:00+00:00, "
        "2024-01-03 02:00:00+00:00: timestamps are unique broken in 2 row(s) "
        "[rule: unique_timestamp, critical]",
        f"{files['dup']}: column 'timestamp' row 51: value(s) 2024-01-03 02:00:00+00:00: "
        "timestamps strictly increase broken in 1 row(s) [rule: increasing_timestamp, "
        "critical]"]
    assert errors[2].endswith("NOT stored (critical rules failed: unique_timestamp, "
                              "increasing_timestamp)") and len(errors) == 3
    assert not lake.exists()  # lake untouched: not even created
    with engine.connect() as conn:
        logged = conn.execute(select(DataQualityLog.issue_type, DataQualityLog.severity,
                                     DataQualityLog.symbol)).all()
    assert sorted(logged) == [("increasing_timestamp", "critical", "BTC/USDT"),
                              ("unique_timestamp", "critical", "BTC/USDT")]
    # --allow-degraded stores the 100 distinct bars and logs that it did
    forced = _import(files["dup"], str(lake), "--db-url", db, "--allow-degraded")
    assert forced.exit_code == 0, forced.output
    assert ("read 101 row(s), wrote 100 new, skipped 0 already stored, dropped 1 unstorable"
            in forced.stdout)
    assert "[DEGRADED: unique_timestamp, increasing_timestamp]" in forced.stdout
    assert len(CandleLake(lake).read(*SERIES)) == 100
    with engine.connect() as conn:
        types = conn.execute(select(DataQualityLog.issue_type)).scalars().all()
    assert types.count("stored_degraded") == 1


def test_unusable_input_exits_2_with_one_line_and_stores_nothing(tmp_path, files):
    lake = tmp_path / "lake"
    cases = {
        "novol": ([files["novol"]], "missing column(s) ['volume']"),
        "missing": ([str(tmp_path / "nope.parquet")], "file not found [rule: file_exists]"),
        "format": ([str(tmp_path / "bars.txt")], "unsupported file type '.txt'"),
    }
    (tmp_path / "bars.txt").write_text("timestamp,open\n")
    for name, (argv, needle) in cases.items():
        res = _import(*argv, str(lake))
        assert res.exit_code == 2, (name, res.output)
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("error: ") and needle in line, (name, line)
    novol = _import(files["novol"], str(lake)).stderr.strip()
    assert novol.startswith(f"error: {files['novol']}: ") and novol.endswith(
        "[rule: missing_column]")
    for flag, value, needle in (("--timeframe", "1hour", "timeframe"),
                                ("--symbol", "BTCUSDT", "BTC/USDT"),
                                ("--exchange", "Bin/ance", "exchange")):
        args = {"--exchange": "binance", "--symbol": "BTC/USDT", "--timeframe": "1h",
                flag: value}
        res = invoke("import", files["first"], *[x for kv in args.items() for x in kv],
                     "--lake", str(lake))
        assert res.exit_code == 2 and needle in res.stderr, (flag, res.output)
        assert len(res.stderr.strip().splitlines()) == 1
    assert not lake.exists()


def test_import_candles_function(tmp_path, files, january, sink):
    lake = CandleLake(tmp_path / "lake")
    result = import_candles(files["first"], lake, *SERIES, sink=sink)
    assert (result.rows, result.written, result.skipped, result.dropped) == (240, 240, 0, 0)
    assert result.stored and not result.degraded and result.part in lake.parts(*SERIES)
    assert result.report.timeframe == "1h" and result.report.coverage == 1.0
    assert sink.issues == []  # clean real data: no finding
    refused = import_candles(files["dup"], lake, *SERIES, sink=sink)
    assert not refused.stored and refused.written == 0 and refused.part is None
    assert set(sink.types()) == {"unique_timestamp", "increasing_timestamp"}
    assert len(lake.parts(*SERIES)) == 1
    naive = tmp_path / "naive.parquet"
    january.assign(timestamp=january.timestamp.dt.tz_localize(None)).to_parquet(naive)
    assert not import_candles(naive, lake, *SERIES).stored  # timestamp_timezone is critical
    with pytest.raises(DataValidationError, match=r"naive\.parquet: .*\[rule: "
                                                  r"timestamp_timezone\]"):
        import_candles(naive, lake, *SERIES, allow_degraded=True)
    with pytest.raises(DataValidationError, match="missing_column"):
        import_candles(files["novol"], lake, *SERIES)
    assert len(lake.read(*SERIES)) == 240


def test_mounted_on_the_huracan_command(tmp_path):
    from huracan.cli import app

    res = CliRunner().invoke(app, ["lake", "list", "--lake", str(tmp_path)])
    assert res.exit_code == 0 and "no candles stored" in res.stdout
