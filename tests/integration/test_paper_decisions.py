"""Decisions on what production did (issue 24): ``registry monitor`` on the paper ledger's
realised returns (the 5 % rule, rollback to cash, ``--source``), the drift report's current
window from the prediction log, the nightly ``paper`` step (alive, stale, absent) and the daily
MLflow paper run (one per day per account).

Fast tests write ledger rows directly (SQLAlchemy, the columns of :mod:`huracan.db.tables`) on
SQLite and Postgres; the slow ones use a real registered model
(tests/integration/paper_model.py: LightGBM on real BTC/USDT 1h candles of 2019-01..04) and
run the commands with CliRunner.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import delete, insert
from typer.testing import CliRunner

from huracan.cli import app
from huracan.db.tables import PaperAccount, PaperMark, PaperOrder, Prediction
from huracan.paper import monitoring
from huracan.paper.monitoring import live_account, liveness, log_daily_run, window_result
from huracan.timeutil import to_utc

SYMBOL, TF = "BTC/USDT", "1h"
ACCOUNT = live_account(SYMBOL, TF)


class Recorder:
    """A notifier that keeps the alerts."""

    def __init__(self) -> None:
        self.alerts: list = []

    def notify(self, alert) -> None:
        self.alerts.append(alert)


# ------------------------------------------------------------------------- ledger rows
def add_account(engine, *, heartbeat=None, model_name="huracan-BTCUSDT-1h",
                anchor="2019-05-01") -> None:
    """The live account row (``paper_accounts``), as the paper loop opens it."""
    with engine.begin() as conn:
        conn.execute(insert(PaperAccount).values(
            account=ACCOUNT, symbol=SYMBOL, timeframe=TF, mode="live", model_name=model_name,
            production=f"models:/{model_name}@production",
            anchor=pd.Timestamp(anchor, tz="UTC").to_pydatetime(),
            execution={"periods_per_year": 8760.0, "market": "spot"},
            created_at=pd.Timestamp(anchor, tz="UTC").to_pydatetime(), heartbeat_at=heartbeat))


def put_marks(engine, times, position, asset_return, fee: float = 0.0004) -> None:
    """Replace the account's marks by one row per bar of ``times``: ``position`` held over the
    bar's close-to-close ``asset_return``, a fee on the turnover, equity compounded."""
    pos = np.asarray(position, dtype=np.float64)
    asset = np.asarray(asset_return, dtype=np.float64)
    prev = np.concatenate([[0.0], pos[:-1]])
    gross = pos * asset
    cost = fee * np.abs(pos - prev)
    net = gross - cost
    equity = np.cumprod(1.0 + net)
    now = datetime.now(UTC)
    rows = [dict(account=ACCOUNT, bar_time=pd.Timestamp(t).to_pydatetime(),
                 prev_position=float(prev[i]), position=float(pos[i]),
                 asset_return=float(asset[i]), gross_return=float(gross[i]),
                 cost=float(cost[i]), funding_cost=0.0, borrow_cost=0.0,
                 net_return=float(net[i]), equity=float(equity[i]), marked_at=now)
            for i, t in enumerate(times)]
    with engine.begin() as conn:
        conn.execute(delete(PaperMark).where(PaperMark.account == ACCOUNT))
        if rows:
            conn.execute(insert(PaperMark), rows)


def _utc(t) -> datetime:
    return to_utc(t).to_pydatetime()


def add_order(engine, bar_time, decided_at, status="decided", version="1") -> None:
    with engine.begin() as conn:
        conn.execute(insert(PaperOrder).values(
            account=ACCOUNT, bar_time=_utc(bar_time), status=status, model_version=version,
            reason=None if status == "decided" else "stale bar",
            decided_at=_utc(decided_at), prev_position=0.0,
            target_position=1.0))


def _hours(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq="1h")


# ------------------------------------------------------------------------- fast: the ledger side
def test_window_result_needs_90_percent_of_the_window(engine):
    times = _hours("2024-03-01", 100)
    rng = np.random.default_rng(0)
    asset = rng.normal(0, 0.01, len(times))
    assert not window_result(engine, ACCOUNT, times, min_bars=24).covers  # no account
    add_account(engine)
    put_marks(engine, times[:89], np.sign(asset[:89]), asset[:89])
    short = window_result(engine, ACCOUNT, times, min_bars=24)
    assert not short.covers and "89 of the window's 100" in short.why
    put_marks(engine, times[:90], np.sign(asset[:90]), asset[:90])
    win = window_result(engine, ACCOUNT, times, min_bars=24)
    assert win.covers and win.bars == 90 and win.label() == f"paper ledger ({ACCOUNT}, 90 bars)"
    res = win.result
    # the evaluation's own arithmetic: compounded net returns, one trade per side run
    net = res.returns["strategy_return"].to_numpy()
    assert res.metrics.total_return == pytest.approx(np.prod(1 + net) - 1, rel=1e-12)
    sides = np.sign(np.sign(asset[:90]))
    assert res.metrics.n_trades == 1 + int((sides[1:] != sides[:-1]).sum())
    assert not window_result(engine, ACCOUNT, times, min_bars=95).covers  # min_bars counts too
    # production v2 took over at bar 20: v2 is judged on its own bars only (70 of 100)
    for i, t in enumerate(times[:90]):
        add_order(engine, t, t + pd.Timedelta(hours=1), version="1" if i < 20 else "2")
    assert window_result(engine, ACCOUNT, times, min_bars=24, version="1").covers is False
    v2 = window_result(engine, ACCOUNT, times, min_bars=24, version="2")
    assert not v2.covers and "marks 70 of v2" in v2.why
    assert window_result(engine, ACCOUNT, times[20:90], min_bars=24, version="2").covers


def test_liveness_alive_stale_and_never(engine):
    now = pd.Timestamp("2024-03-05 12:10", tz="UTC")
    assert not liveness(engine, ACCOUNT, "2h", now).exists
    add_account(engine)
    never = liveness(engine, ACCOUNT, "2h", now)
    assert never.exists and never.stale and "never decided" in never.line()
    add_order(engine, "2024-03-05 10:00", "2024-03-05 11:00:05")
    live = liveness(engine, ACCOUNT, "2h", now)
    assert not live.stale and live.age_s == pytest.approx(70 * 60 - 5)
    stale = liveness(engine, ACCOUNT, "1h", now)
    assert stale.stale and "STALE" in stale.line()


# ------------------------------------------------------------------------- fast: nightly step
def _night(tmp: Path, db_url: str, **kw):
    from huracan.orchestration.steps import NightSettings

    base = dict(
        run_id="2024-03-05-1h", timeframe=TF, offline=True, lake=str(tmp / "lake"),
        exchange="binance", source_timeframe=TF, since="2024-01-01", until=None,
        history_days=None, imports={}, derivatives=(), allow_degraded=False,
        models=("lightgbm",), train_overrides=(), launcher="basic", launcher_jobs=1,
        threads=None, monitor=False, monitor_window="30d", drift_share=0.5,
        weekly_rescale=False, sizer=False, sizer_every_days=7.0, sizer_overrides=(),
        work_dir=str(tmp / "work"), cwd=str(tmp), db_url=db_url,
        tracking_uri=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}",
        store_dir=str(tmp / "mlruns"), experiment_name="huracan")
    return NightSettings(**(base | kw))


@pytest.fixture()
def alerts(monkeypatch):
    from huracan.orchestration import steps

    rec = Recorder()
    monkeypatch.setattr(steps, "_notifier", lambda s: rec)
    return rec


def test_nightly_paper_step_absent_skips_unless_expected(tmp_path, engine, db_url, alerts):
    from huracan.orchestration.steps import StepSkipped, step_paper

    with pytest.raises(StepSkipped, match="no paper account"):
        step_paper(_night(tmp_path, db_url), SYMBOL)
    assert alerts.alerts == []
    with pytest.raises(RuntimeError, match="expected=true"):
        step_paper(_night(tmp_path, db_url, paper_expected=True), SYMBOL)
    assert [a.severity for a in alerts.alerts] == ["critical"]
    with pytest.raises(StepSkipped, match="enabled=false"):
        step_paper(_night(tmp_path, db_url, paper=False), SYMBOL)


def test_nightly_paper_step_alive_then_stale(tmp_path, engine, db_url, alerts):
    from huracan.orchestration.steps import paper_max_age, step_paper

    now = pd.Timestamp("2024-03-05 12:10", tz="UTC")
    add_account(engine, anchor="2024-03-04")
    add_order(engine, "2024-03-05 10:00", "2024-03-05 11:00:04")
    times = _hours("2024-03-04", 34)
    put_marks(engine, times, np.ones(len(times)), np.full(len(times), 0.001))
    s = _night(tmp_path, db_url)
    assert paper_max_age(s) == "7200s"  # two 1h bars
    detail, runs = step_paper(s, SYMBOL, now=now)
    assert "alive" in detail and len(runs) == 2 and alerts.alerts == []  # yesterday, today
    # four hours later nothing new was decided: stale, a warning
    detail, runs2 = step_paper(s, SYMBOL, now=now + pd.Timedelta(hours=4))
    assert "STALE" in detail and [a.severity for a in alerts.alerts] == ["warning"]
    assert "not alive" in alerts.alerts[0].title
    assert runs2 == runs  # the same day's runs, updated, not new ones
    client = MlflowClient(tracking_uri=s.tracking_uri)
    day = client.get_run(runs[0])
    assert day.info.run_name == f"{ACCOUNT}-2024-03-04"
    assert day.data.metrics["day_bars"] == 24 and day.data.metrics["todate_bars"] == 24
    today = client.get_run(runs[1]).data.metrics
    assert today["day_bars"] == 10 and today["todate_bars"] == 34 and today["day_decided"] == 1
    assert today["last_decision_age_s"] == pytest.approx(5 * 3600 + 10 * 60 - 4)


def test_daily_run_is_one_per_day_and_account(tmp_path, engine):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    add_account(engine, anchor="2024-03-04")
    times = _hours("2024-03-04", 24)
    rng = np.random.default_rng(1)
    asset = rng.normal(0, 0.01, len(times))
    put_marks(engine, times, np.sign(rng.normal(size=len(times))), asset)
    add_order(engine, "2024-03-04 22:00", "2024-03-04 23:00:03")
    add_order(engine, "2024-03-04 23:00", "2024-03-05 00:00:03")  # the next day's decision
    first = log_daily_run(client, engine, ACCOUNT, "2024-03-04")
    again = log_daily_run(client, engine, ACCOUNT, pd.Timestamp("2024-03-04 17:00", tz="UTC"))
    assert first == again
    exp = client.get_experiment_by_name(monitoring.MONITORING_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == f"{ACCOUNT}-2024-03-04"
    m = runs[0].data.metrics
    res = monitoring.account_result(engine, ACCOUNT)
    assert m["day_net_return"] == pytest.approx(res.metrics.total_return)
    assert m["day_sharpe"] == pytest.approx(res.metrics.sharpe)
    assert m["day_max_drawdown"] == pytest.approx(res.metrics.max_drawdown)
    assert m["day_trades"] == res.metrics.n_trades and m["day_decided"] == 2  # by bar time
    assert m["day_skipped"] == 0 and m["last_decision_age_s"] == pytest.approx(3600 - 3)
    assert runs[0].data.params["symbol"] == SYMBOL
    with pytest.raises(ValueError, match="no paper account"):
        log_daily_run(client, engine, "paper-NOPE-1h", "2024-03-04")


# ------------------------------------------------------------------------- slow: a real model
@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    """The real-candle production model, and a data file of its months plus May 2019 (unseen):
    the monitor's 30-day window is May."""
    from paper_model import train_production  # tests/integration/paper_model.py

    tmp = tmp_path_factory.mktemp("decisions")
    pm = train_production(tmp)
    c = pm.candles
    data = tmp / "btc_2019_jan_may.parquet"
    c[(c.timestamp >= "2019-01-01") & (c.timestamp < "2019-06-01")].to_parquet(data)
    return pm, data


@pytest.fixture()
def fresh(prod):
    """Production back on the trained version, an empty ledger and prediction log."""
    from huracan.db.session import make_engine

    pm, data = prod
    pm.client.set_registered_model_alias(pm.name, "production", pm.version)
    engine = make_engine(pm.db_url)
    with engine.begin() as conn:
        for table in (PaperMark, PaperOrder, PaperAccount, Prediction):
            conn.execute(delete(table))
    yield pm, data, engine
    engine.dispose()


def _monitor_window(pm, data):
    """The window ``registry monitor --window 30d`` scores, built by the same functions, and
    production's backtest re-score on it (what the gate's ``score_at_promotion`` holds)."""
    from huracan.data.ohlcv import bars_per_year
    from huracan.rebuild import rebuild_features, run_settings
    from huracan.registry.evaluate import restrict_window, score_model, window_from_features
    from huracan.registry.promotion import seen_until
    from huracan.stages import EVAL_CONTEXT_ROWS

    settings = run_settings(pm.client, pm.run_id)
    fs, _ = rebuild_features(settings, data)
    win = window_from_features(fs.frame, 720, EVAL_CONTEXT_ROWS, settings.backtest,
                               bars_per_year(TF), TF)
    win = restrict_window(win, seen_until(pm.client.get_model_version(pm.name, pm.version)))
    scored = win.frame[win.frame.split == "test"]
    score = score_model(f"models:/{pm.name}/{pm.version}", win).metrics.composite_score
    times = pd.DatetimeIndex(pd.to_datetime(scored["timestamp"], utc=True))
    return times, scored["next_return"].to_numpy(np.float64), float(score)


def _monitor(pm, data, *extra):
    return CliRunner().invoke(app, [
        "registry", "monitor", pm.name, "--data", str(data), "--no-drift",
        "--tracking-uri", pm.tracking_uri, "--db-url", pm.db_url, *extra])


def _score(output: str) -> float:
    return float(re.search(r"composite_score (-?[\d.]+)", output).group(1))


@pytest.mark.slow
def test_monitor_on_paper_returns_rolls_back_by_the_5_percent_rule(fresh):
    from huracan.registry import events
    from huracan.registry.cash import is_cash
    from huracan.registry.promotion import PRODUCTION, alias_version

    pm, data, engine = fresh
    times, asset, backtest = _monitor_window(pm, data)
    # the gate's tag: repr of the candidate's score on its decision window
    pm.client.set_model_version_tag(pm.name, pm.version, "huracan.score_at_promotion",
                                    repr(backtest))
    add_account(engine)
    # production did well on paper (it held the side of the next move): within tolerance
    put_marks(engine, times, np.where(asset >= 0, 1.0, -1.0), asset)
    good = window_result(engine, ACCOUNT, times, min_bars=24)
    out = _monitor(pm, data)
    assert out.exit_code == 0, out.output
    assert f"source: paper ledger ({ACCOUNT}, {len(times)} bars)" in out.output
    assert _score(out.output) == pytest.approx(good.result.metrics.composite_score, abs=1e-4)
    assert "within tolerance: production unchanged" in out.output
    # --source backtest ignores the ledger: the model re-scored, the gate's own figure
    out = _monitor(pm, data, "--source", "backtest")
    assert out.exit_code == 0, out.output
    assert "source: backtest re-score" in out.output and "paper ledger" not in out.output
    assert _score(out.output) == pytest.approx(backtest, abs=1e-4)
    # a ledger covering 80 % of the window: auto falls back (saying why), paper refuses (exit 3)
    keep = times[: int(0.8 * len(times))]
    put_marks(engine, keep, np.zeros(len(keep)), asset[: len(keep)])
    out = _monitor(pm, data)
    assert out.exit_code == 0 and "source: backtest re-score" in out.output, out.output
    assert f"marks {len(keep)} of the window's {len(times)} bars" in out.output
    assert _monitor(pm, data, "--source", "paper").exit_code == 3
    # the rule on the paper figure itself: 4 % below the score at promotion is within 5 %
    put_marks(engine, times, np.where(asset >= 0, 1.0, -1.0), asset)
    paper = good.result.metrics.composite_score
    assert paper > 0
    pm.client.set_model_version_tag(pm.name, pm.version, "huracan.score_at_promotion",
                                    repr(paper / 0.96))
    out = _monitor(pm, data, "--source", "paper")
    assert out.exit_code == 0 and "within tolerance: production unchanged" in out.output, \
        out.output
    pm.client.set_model_version_tag(pm.name, pm.version, "huracan.score_at_promotion",
                                    repr(backtest))
    assert events.history(engine, pm.name) == []  # nothing degraded so far
    # production did badly on paper (always against the next move): degraded beyond 5 %,
    # nothing earlier to roll back to -> cash
    put_marks(engine, times, np.where(asset >= 0, -1.0, 1.0), asset)
    bad = window_result(engine, ACCOUNT, times, min_bars=24).result.metrics.composite_score
    assert bad < backtest - 0.05 * abs(backtest)
    out = _monitor(pm, data)
    assert out.exit_code == 0, out.output
    assert f"source: paper ledger ({ACCOUNT}, {len(times)} bars)" in out.output
    assert "production is now cash (position 0)" in out.output
    assert is_cash(alias_version(pm.client, pm.name, PRODUCTION))
    (ev,) = events.history(engine, pm.name)
    assert ev.event == "rolled_back" and ev.champion_version == pm.version
    assert ev.champion_score == pytest.approx(bad)
    assert f"source: paper ledger ({ACCOUNT}, {len(times)} bars)" in ev.reason
    assert ev.evidence["to"] == "cash" and ev.evidence["source_kind"] == "paper"
    assert ev.evidence["paper_account"] == ACCOUNT
    assert ev.evidence["paper_bars"] == ev.evidence["window_bars"] == len(times)
    print(f"\nmonitor on paper: backtest {backtest:.4f}, paper good "
          f"{good.result.metrics.composite_score:.4f}, paper bad {bad:.4f} over {len(times)} bars")


def _log_predictions(engine, pm, tmp: Path, bars: pd.DatetimeIndex, history: int = 200) -> None:
    """Prediction-log rows of ``bars`` as the log writes them: one row per answered request
    (its newest bar), its candles (the ``history`` bars up to it) in a content-addressed
    Parquet file (``inputs_path``), their digest and row count."""
    from huracan.data.prediction_store import inputs_digest

    c = pm.candles.set_index("timestamp", drop=False)
    rows = []
    for bar in bars:
        req = c.loc[:bar].iloc[-history:].reset_index(drop=True)
        digest = inputs_digest(req)
        path = tmp / "inputs" / f"{digest}.parquet"
        path.parent.mkdir(exist_ok=True)
        req.to_parquet(path)
        rows.append(dict(
            served_at=(bar + pd.Timedelta(hours=1, seconds=2)).to_pydatetime(), source="serve",
            model_name=pm.name, model_version=pm.version, run_id=pm.run_id, symbol=SYMBOL,
            timeframe=TF, bar_time=bar.to_pydatetime(), forecast=0.001, position=1.0,
            inputs_digest=digest, inputs_rows=len(req), inputs_path=str(path), latency_ms=20.0))
    with engine.begin() as conn:
        conn.execute(insert(Prediction), rows)


@pytest.mark.slow
def test_drift_current_window_is_the_logged_inputs(fresh, tmp_path):
    pm, data, engine = fresh
    c = pm.candles
    stamps = pd.DatetimeIndex(c.timestamp)
    # nine gap-free days, past the features' warm-up after the exchange's gap of 2019-05-15
    logged = stamps[(stamps >= "2019-05-23") & (stamps < "2019-06-01")]
    assert len(logged) == 9 * 24
    _log_predictions(engine, pm, tmp_path, logged)

    def report(*window):
        out = CliRunner().invoke(app, [
            "drift", "report", SYMBOL, "--timeframe", TF, *window, "--data", str(data),
            "--workspace", str(tmp_path / "ws"), "--tracking-uri", pm.tracking_uri,
            "--db-url", pm.db_url, "--json"])
        assert out.exit_code in (0, 4), out.output
        return json.loads(out.output)

    rep = report("--from", "2019-05-23", "--to", "2019-05-31T23:00")
    assert rep["current_source"] == "logged"
    assert rep["current_rows"] == len(logged)
    assert pd.Timestamp(rep["current_start"]) == logged[0]
    assert pd.Timestamp(rep["current_end"]) == logged[-1]
    tags = pm.client.get_run(rep["report_run_id"]).data.tags
    assert tags["huracan.drift.current_source"] == "logged"
    # registry monitor's drift check on the newest 9 days: the same logged window
    pm.client.set_model_version_tag(pm.name, pm.version, "huracan.score_at_promotion",
                                    repr(-1e9))  # the performance half never degrades here
    out = CliRunner().invoke(app, [
        "registry", "monitor", pm.name, "--data", str(data), "--window", "9d",
        "--workspace", str(tmp_path / "ws"), "--tracking-uri", pm.tracking_uri,
        "--db-url", pm.db_url, "--source", "backtest"])
    assert out.exit_code == 0, out.output
    assert "current window: logged" in out.output
    # a window the log covers only in part: rebuilt from the data file, saying why
    rep = report("--from", "2019-05-01", "--to", "2019-05-31T23:00")
    assert rep["current_source"] == "rebuilt" and "prediction log holds" in rep["current_note"]
    assert pd.Timestamp(rep["current_start"]) == pd.Timestamp("2019-05-01", tz="UTC")
    print(f"\ndrift on logged inputs: {len(logged)} bars, share {rep['drift_share']:.3f}")


@pytest.mark.slow
def test_daily_run_shows_backtest_beside_paper(fresh):
    pm, _, engine = fresh
    add_account(engine, anchor="2019-05-01")
    times = _hours("2019-05-02", 24)
    put_marks(engine, times, np.ones(24), np.full(24, 0.001))
    run_id = log_daily_run(pm.client, engine, ACCOUNT, "2019-05-02")
    run = pm.client.get_run(run_id)
    test = pm.client.get_run(pm.run_id).data.metrics
    assert run.data.metrics["backtest_composite_score"] == pytest.approx(
        test["test_composite_score"])
    # long all day at +0.1 % a bar, the entry paying the 4 bp fee
    assert run.data.metrics["day_net_return"] == pytest.approx(
        (1.001 - 0.0004) * 1.001 ** 23 - 1, rel=1e-12)
    assert run.data.tags["huracan.production_version"] == pm.version
    assert log_daily_run(pm.client, engine, ACCOUNT, "2019-05-02") == run_id


def test_nightly_paper_settings_from_the_config(tmp_path):
    from hydra import compose, initialize_config_dir

    from huracan.config import register_resolvers
    from huracan.nightly import settings_from_config
    from huracan.orchestration.steps import paper_max_age
    from huracan.resources import conf_dir

    register_resolvers()

    def settings(*overrides):
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return settings_from_config(compose("nightly", overrides=list(overrides)),
                                        cwd=tmp_path)[0]

    s = settings()  # the defaults: check an account when one exists, max age two bars
    assert s.paper and not s.paper_expected and s.paper_daily_run and s.paper_max_age is None
    assert paper_max_age(s) == "7200s"
    s = settings("nightly.paper.expected=true", "nightly.paper.max_age=3h",
                 "nightly.paper.daily_run=false")
    assert s.paper_expected and paper_max_age(s) == "3h" and not s.paper_daily_run
    with pytest.raises(ValueError, match=r"nightly\.paper\.max_ag"):
        settings("+nightly.paper.max_ag=3h")
