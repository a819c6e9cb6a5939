"""The FreqAI-parity preset through its gate on a small slice (ADA/BTC 5m, two daily OOS steps),
as a command: regimes absent from the candidate's scored bars are no evidence (cash: the
fallback cannot beat cash without a bar, with the reason recorded), never a failed gate; the
command exits 0 and the decisions are in ``gate.json``, ``registry_events`` and the regime map
tag. The full seven-pair run is timed in benchmarks/walkforward_parity.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from huracan.db.session import make_engine
from huracan.regime.detection import REGIMES
from huracan.regime.registry import current_map
from huracan.registry import events
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
NAME = "huracan-ADABTC-5m"


def test_the_parity_preset_gates_a_slice_whose_scored_bars_lack_regimes(tmp_path, train_cli):
    # two days of OOS bars: 5 trades at the preset's 0.2 % threshold, hence min_trades=3
    proc = train_cli(["experiment=freqai_parity", "data.base=ADA", "split.oos_end=2018-01-22",
                      "model.n_estimators=30", "explain.max_rows=20", "importance.n_repeats=1",
                      "selection.min_trades=3", "-m"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [decision] = json.loads((tmp_path / "multirun" / "gate.json").read_text())["decisions"]
    assert decision["model"] == NAME and decision["decision"] in ("promoted", "rejected")
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    run_id = decision["candidate_run_id"]
    oos = pd.read_parquet(client.download_artifacts(run_id, "backtest/oos_returns.parquet",
                                                    str(tmp_path)))
    absent = set(REGIMES) - set(oos["regime"])
    assert absent  # the condition of the crash: a regime none of its scored bars was in
    mapping = current_map(client, NAME)
    assert set(mapping) == set(REGIMES)
    for regime in absent:  # no bar there: the fallback cannot beat cash, the regime is cash
        entry = mapping[regime]
        assert entry["source"] == "cash" and entry["decision"] == "cash"
        assert f"no scored bars in regime {regime}" in entry["reason"]
        assert "never trades (0 bars)" in entry["reason"]
        assert entry["version"] is None  # the alias was not set on no evidence
    evs = events.history(make_engine(f"sqlite:///{tmp_path / 'brain.db'}"), NAME)
    by_alias = {e.alias: e for e in evs}
    # every model choice met the gate; a cash regime takes none
    assert set(by_alias) == {"production", *(f"regime-{r}" for r, e in mapping.items()
                                             if e["decision"] != "cash")}
    prod = by_alias["production"]
    # no champion: beating cash (net return > 0, PSR >= 0.9 on the 288 bars) is the whole test
    cash = prod.evidence["cash"]
    assert prod.event == decision["decision"] == ("promoted" if cash["beats"] else "rejected")
    assert ("candidate beats cash" if cash["beats"] else "candidate does not beat cash") in \
        prod.reason
    assert prod.run_id == run_id and cash["bars"] == 288
    assert prod.eval_bars == 288  # one daily step of 5m bars (> registry.min_eval_bars 168)
