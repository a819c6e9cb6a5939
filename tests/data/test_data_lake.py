"""The Parquet candle lake: partitions, append-only-new, missing ranges, compaction, and crash
safety (a writer SIGKILLed at each step of a write loses no bar)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from huracan.data.lake import CandleLake, symbol_from_key, symbol_key


@pytest.fixture
def bars(spot_1h) -> pd.DataFrame:
    return spot_1h.iloc[:100].reset_index(drop=True)


def test_partition_layout_and_symbol_keys(tmp_path):
    lake = CandleLake(tmp_path)
    assert lake.partition("Binance", "BTC/USDT:USDT", "1h") == (
        tmp_path / "ohlcv" / "exchange=binance" / "symbol=BTC-USDT_USDT" / "timeframe=1h")
    for s in ("BTC/USDT", "BTC/USDT:USDT", "1000BONK/USDT:USDT"):
        assert symbol_from_key(symbol_key(s)) == s


def test_append_writes_only_new_bars(tmp_path, bars):
    lake = CandleLake(tmp_path)
    first = lake.append(bars.iloc[:60], "binance", "BTC/USDT", "1h")
    assert first.written == 60 and first.skipped == 0 and first.path is not None
    again = lake.append(bars.iloc[:60], "binance", "BTC/USDT", "1h")
    assert again.written == 0 and again.path is None
    more = lake.append(bars.iloc[40:], "binance", "BTC/USDT", "1h")
    assert more.written == 40 and more.skipped == 20
    out = lake.read("binance", "BTC/USDT", "1h")
    pd.testing.assert_frame_equal(out, bars)
    assert len(lake.parts("binance", "BTC/USDT", "1h")) == 2
    schema = pq.read_schema(first.path)
    assert str(schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert lake.series() == [("binance", "BTC/USDT", "1h")]


def test_read_window_and_hive_partitions(tmp_path, bars):
    lake = CandleLake(tmp_path)
    lake.append(bars, "binance", "BTC/USDT", "1h")
    part = lake.read("binance", "BTC/USDT", "1h", start=bars.timestamp[10], end=bars.timestamp[20])
    assert len(part) == 10 and part.timestamp.iloc[0] == bars.timestamp[10]
    everything = pd.read_parquet(tmp_path / "ohlcv")  # any Hive-aware reader sees the keys
    assert set(everything["exchange"].astype(str)) == {"binance"}
    assert set(everything["timeframe"].astype(str)) == {"1h"}


def test_missing_ranges(tmp_path, bars):
    lake = CandleLake(tmp_path)
    ts = bars.timestamp
    assert lake.missing_ranges("binance", "BTC/USDT", "1h", ts[0], ts[50]) == [(ts[0], ts[50])]
    lake.append(bars.iloc[20:40], "binance", "BTC/USDT", "1h")
    assert lake.missing_ranges("binance", "BTC/USDT", "1h", ts[0], ts[60]) == [
        (ts[0], ts[20]), (ts[40], ts[60])]
    assert lake.missing_ranges("binance", "BTC/USDT", "1h", ts[20], ts[40]) == []
    assert lake.missing_ranges("okx", "BTC/USDT", "1h", ts[20], ts[40]) == [(ts[20], ts[40])]


def test_compact_merges_parts(tmp_path, bars):
    lake = CandleLake(tmp_path)
    for i in range(0, 100, 25):
        lake.append(bars.iloc[i:i + 25], "binance", "BTC/USDT", "1h")
    assert len(lake.parts("binance", "BTC/USDT", "1h")) == 4
    lake.compact("binance", "BTC/USDT", "1h")
    assert len(lake.parts("binance", "BTC/USDT", "1h")) == 1
    pd.testing.assert_frame_equal(lake.read("binance", "BTC/USDT", "1h"), bars)


def test_append_refuses_unvalidated_shapes(tmp_path, bars):
    lake = CandleLake(tmp_path)
    with pytest.raises(ValueError, match="naive"):
        lake.append(bars.assign(timestamp=bars.timestamp.dt.tz_localize(None)), "b", "X/Y", "1h")
    with pytest.raises(ValueError, match="duplicated"):
        lake.append(pd.concat([bars, bars.iloc[:1]]), "b", "X/Y", "1h")
    with pytest.raises(ValueError, match="volume"):
        lake.append(bars.drop(columns="volume"), "b", "X/Y", "1h")


# ---- crash safety: a writer SIGKILLed at each step of a write ---------------------------------

WORKER = Path(__file__).with_name("lake_worker.py")
SERIES = ("binance", "BTC/USDT", "1h")


def _run_until_killed(root: Path, action: str, stop_at: str, *extra: str) -> None:
    """Run lake_worker.py, wait until it reports it stopped at ``stop_at``, SIGKILL it."""
    child = subprocess.Popen([sys.executable, str(WORKER), str(root), action, stop_at, *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == f"STOPPED {stop_at}", (line, child.stderr.read() if child.stderr else "")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _raw_timestamps(lake: CandleLake) -> pd.Series:
    """Every stored timestamp over every part (duplicates kept)."""
    parts = lake.parts(*SERIES)
    return pd.concat([pq.read_table(p, columns=["timestamp"]).column(0).to_pandas()
                      for p in parts], ignore_index=True)


def _leftovers(lake: CandleLake) -> list[Path]:
    directory = lake.partition(*SERIES)
    return sorted(directory.glob(".tmp-*")) + sorted(directory.glob(".compact-*"))


def _assert_reads_exactly(lake: CandleLake, want: pd.DataFrame) -> None:
    got = lake.read(*SERIES)
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    assert set(_raw_timestamps(lake)) == set(want.timestamp)  # no bar lost, none invented
    assert lake.bounds(*SERIES) == (want.timestamp.iloc[0], want.timestamp.iloc[-1])
    ts = want.timestamp
    step = pd.Timedelta("1h")
    assert lake.missing_ranges(*SERIES, ts.iloc[0] - 5 * step, ts.iloc[-1] + 6 * step) == [
        (ts.iloc[0] - 5 * step, ts.iloc[0]), (ts.iloc[-1] + step, ts.iloc[-1] + 6 * step)]
    got_ts = lake._timestamps(*SERIES, ts.iloc[0], ts.iloc[-1])
    assert got_ts is not None and len(got_ts) == len(want)


@pytest.mark.parametrize("stop_at, parts_after_kill, leftovers_after_kill", [
    ("compact:temp-written", 4, 1),   # merged file not in place yet: old parts only
    ("compact:replaced", 5, 0),       # merged file in place, old parts not deleted: overlap
    ("compact:deleted-one", 4, 0),    # one old part deleted, three still overlap
])
def test_compaction_killed_at_each_step_loses_nothing(tmp_path, bars, stop_at,
                                                      parts_after_kill, leftovers_after_kill):
    lake = CandleLake(tmp_path)
    for i in range(0, 80, 20):
        lake.append(bars.iloc[i:i + 20], *SERIES)
    _run_until_killed(tmp_path, "compact", stop_at)
    assert len(lake.parts(*SERIES)) == parts_after_kill
    assert len(_leftovers(lake)) == leftovers_after_kill
    _assert_reads_exactly(lake, bars.iloc[:80])
    # an append after the crash stores only the bars not stored in any part
    more = lake.append(bars.iloc[70:], *SERIES)
    assert (more.written, more.skipped) == (20, 10)
    _assert_reads_exactly(lake, bars)
    # the next compaction completes (even when its target is the interrupted one's file)
    merged = lake.compact(*SERIES)
    assert lake.parts(*SERIES) == [merged] and _leftovers(lake) == []
    assert len(_raw_timestamps(lake)) == 100
    _assert_reads_exactly(lake, bars)


def test_append_killed_before_the_rename_leaves_the_old_bars(tmp_path, bars):
    lake = CandleLake(tmp_path)
    lake.append(bars.iloc[:50], *SERIES)
    new = tmp_path / "new.parquet"
    bars.iloc[30:].to_parquet(new)
    _run_until_killed(tmp_path, "append", "append:temp-written", str(new))
    assert len(lake.parts(*SERIES)) == 1 and len(_leftovers(lake)) == 1
    _assert_reads_exactly(lake, bars.iloc[:50])
    # Arrow's dataset reader skips the hidden temporary too
    assert len(pd.read_parquet(tmp_path / "ohlcv")) == 50
    again = lake.append(bars.iloc[30:], *SERIES)
    assert (again.written, again.skipped) == (50, 20) and _leftovers(lake) == []
    _assert_reads_exactly(lake, bars)


def test_append_killed_after_the_rename_is_complete(tmp_path, bars):
    lake = CandleLake(tmp_path)
    lake.append(bars.iloc[:50], *SERIES)
    new = tmp_path / "new.parquet"
    bars.iloc[30:].to_parquet(new)
    _run_until_killed(tmp_path, "append", "append:replaced", str(new))
    assert len(lake.parts(*SERIES)) == 2 and _leftovers(lake) == []
    _assert_reads_exactly(lake, bars)
    assert lake.append(bars, *SERIES).written == 0


def test_compact_onto_the_name_of_an_existing_part(tmp_path, bars):
    """The merged file's name can be an existing part's (here: an interrupted compaction's
    output, which overlaps the parts it merged): it is replaced, never deleted."""
    lake = CandleLake(tmp_path)
    lake.append(bars.iloc[:60], *SERIES)
    lake.append(bars.iloc[60:], *SERIES)
    whole = lake.partition(*SERIES) / (
        f"part-{bars.timestamp.iloc[0]:%Y%m%dT%H%M}-{bars.timestamp.iloc[-1]:%Y%m%dT%H%M}"
        ".parquet")
    bars.to_parquet(whole)  # what a compaction killed before deleting the old parts leaves
    assert len(lake.parts(*SERIES)) == 3
    _assert_reads_exactly(lake, bars)
    assert lake.compact(*SERIES) == whole
    assert lake.parts(*SERIES) == [whole]
    _assert_reads_exactly(lake, bars)
    assert lake.compact(*SERIES) == whole  # one part: nothing to do
