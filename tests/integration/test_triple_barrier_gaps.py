"""Triple-barrier jobs on real gapped candles finish (issue 21): ``python -m huracan.train
data=binance_1h label=triple_barrier ...`` exited 1 in ``average_uniqueness_weights`` on the BTC
1h file. Here, as a command, on its first quarter of 2018 (the 34-hour outage of 2018-02-08/09
inside the fit windows), with each rule and both splits."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow

GAP_FIRST, GAP_LAST = pd.Timestamp("2018-02-08 01:00", tz="UTC"), pd.Timestamp("2018-02-09 09:00",
                                                                               tz="UTC")


@pytest.fixture(scope="module")
def q1_2018(candles_1h, tmp_path_factory):
    """BTC/USDT 1h 2018-01-01..03-31 as a Parquet file (2,126 bars, gaps left in)."""
    path = tmp_path_factory.mktemp("gapped") / "binance-spot_BTCUSDT_1h_2018q1.parquet"
    part = candles_1h[candles_1h["timestamp"] < pd.Timestamp("2018-04-01", tz="UTC")]
    part.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("rule,split", [("threshold", "walk_forward"),
                                        ("barrier", "walk_forward"),
                                        ("meta", "walk_forward"),
                                        ("threshold", "forward")])
def test_triple_barrier_job_on_gapped_real_candles_exits_0_and_counts_the_drops(
        train_cli, q1_2018, tmp_path, rule, split):
    args = ["data=binance_1h", f"data.path={q1_2018}", "label=triple_barrier", f"rule={rule}",
            f"split={split}", "importance.enabled=false"]
    if split == "walk_forward":
        args += ["split.train_bars=30d", "split.val_bars=10d", "split.step_bars=20d"]
    proc = train_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # gaps in the slice: 2018-01-04 04:00 (1 bar, 76 bars after the start: no row before it has
    # its features yet) and 2018-02-08 01:00-02-09 09:00: the 24 rows before it and the last 24
    # rows of the data have a vertical barrier that is not a bar (dropped, counted)
    out = proc.stdout + proc.stderr
    assert ("labels (triple_barrier): 24 row(s) dropped as their label reaches past a data gap, "
            "24 past the data end, 0 without a barrier width") in out
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = [r for r in client.search_runs(experiments) if "label_kind" in r.data.tags]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["labels/dropped_gap"] == 24
    assert run.data.metrics["labels/dropped_end_of_data"] == 24
    assert run.data.tags["rule_kind"] == rule
    if split == "walk_forward":
        folds = pd.read_parquet(client.download_artifacts(
            run.info.run_id, "walkforward/folds.parquet", str(tmp_path)))
        assert len(folds) == 3
        # fold 1 fits across the outage (its train rows weighted by uniqueness on both sides);
        # fold 0 validates up to it (its last 24 rows dropped) and scores from after it
        inside = (folds["train_start"] < GAP_FIRST) & (folds["train_end"] > GAP_LAST)
        assert inside.tolist() == [False, True, False]
        assert folds["val_end"][0] < GAP_FIRST and folds["oos_start"][0] > GAP_LAST
    else:
        assert pd.Timestamp(run.data.tags["train_start"]) < GAP_FIRST
        assert pd.Timestamp(run.data.tags["train_end"]) > GAP_LAST
