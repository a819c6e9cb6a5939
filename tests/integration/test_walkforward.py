"""Walk-forward on real candles: per-fold scalers, no OOS bar reached by its model's labels,
parallel folds equal sequential folds, stitched OOS metrics reproduced from the logged returns, a
two-model sweep under Hydra's joblib launcher (parent run, nested children, summary, one gate
decision), and no secret in anything a run leaves behind."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from huracan import stages
from huracan.data.ohlcv import bars_per_year, timeframe_to_timedelta
from huracan.db.session import make_engine
from huracan.evaluation.diagnostics import window_diagnostics
from huracan.evaluation.evidence import lagged_execution
from huracan.evaluation.execution import bars_of_returns, close_bars, execute, trades_of
from huracan.evaluation.metrics import compute_metrics
from huracan.models.base import Forecaster
from huracan.registry import events
from huracan.registry.manifest import manifest_value
from huracan.tracking.run import default_tracking_uri
from huracan.train import run_config

pytestmark = pytest.mark.slow

SMALL_WF = ["split=walk_forward", "split.train_bars=60d", "split.val_bars=10d",
            "split.step_bars=30d", "model.n_estimators=60", "explain.max_rows=20",
            "importance.n_repeats=1"]


class ProbeOLS(Forecaster):
    """Ordinary least squares that records what it was given (a real estimator, for probing what
    each fold's model sees)."""

    model_type = "probe"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _fit(self, X, y, X_val, y_val, X_val_context, *, starts=None, starts_val=None,
             sample_weight=None) -> None:
        self.fit_X_ = np.array(X)
        self.val_X_ = np.array(X_val)
        A = np.c_[X, np.ones(len(X))]
        self.coef_ = np.linalg.lstsq(A, y, rcond=None)[0]

    def _predict(self, X, context) -> np.ndarray:
        return np.c_[X, np.ones(len(X))] @ self.coef_

    def _save_state(self, path: Path) -> None:
        np.save(path / "coef.npy", self.coef_)

    def _load_state(self, path: Path) -> None:
        self.coef_ = np.load(path / "coef.npy")


@pytest.fixture(scope="module")
def features(sample_1h):
    from huracan.features.build import FeatureConfig, build_features

    return build_features(sample_1h, "1h", FeatureConfig(horizon=3))


def test_every_fold_scales_and_fits_on_its_own_train_rows_only(features):
    from huracan.splits import WalkForwardSplitter

    fs = features
    folds = WalkForwardSplitter(train_bars="60d", val_bars="10d", step_bars="30d",
                                embargo=3).folds(fs.frame.index, "1h", fs.horizon)
    assert len(folds) >= 5
    for fold in folds:
        out = stages.fit_fold(ProbeOLS(), fs.X, fs.y, fold, fs.feature_names, keep=True)
        raw_train = fs.X[fold.train.start : fold.train.stop].astype(np.float64)
        np.testing.assert_allclose(out.scaler.mean_, raw_train.mean(axis=0), rtol=1e-6,
                                   atol=1e-12)
        np.testing.assert_allclose(out.model.fit_X_, out.scaler.transform(raw_train), rtol=1e-5,
                                   atol=1e-5)
        # the OOS forecasts are this fold's OLS on this fold's scaling of the OOS rows
        oos = out.scaler.transform(fs.X[fold.test.start : fold.test.stop])
        np.testing.assert_allclose(out.predictions["test"],
                                   np.c_[oos, np.ones(len(oos))] @ out.model.coef_, rtol=1e-4,
                                   atol=1e-9)


def test_parallel_folds_equal_sequential_folds(features):
    from huracan.models.lightgbm import LightGBMForecaster
    from huracan.splits import WalkForwardSplitter

    fs = features
    folds = WalkForwardSplitter(train_bars="60d", val_bars="10d", step_bars="30d",
                                embargo=3).folds(fs.frame.index, "1h", fs.horizon)
    model = LightGBMForecaster(n_estimators=60, log_period=0, seed=7)
    seq = stages.fit_predict_folds(model, fs, folds, n_jobs=1)
    par = stages.fit_predict_folds(model, fs, folds, n_jobs=2)
    assert [o.fold for o in seq] == [o.fold for o in par]
    for a, b in zip(seq, par, strict=True):
        np.testing.assert_array_equal(a.predictions["test"], b.predictions["test"])
    assert par[-1].model is not None and all(o.model is None for o in par[:-1])


@pytest.fixture(scope="module")
def wf_run(tmp_path_factory):
    """One walk-forward LightGBM job on the shipped sample into a temporary store."""
    from hydra import compose, initialize_config_dir

    from huracan.config import register_resolvers

    tmp = tmp_path_factory.mktemp("wf")
    register_resolvers()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[2] / "conf"),
                               version_base="1.3"):
        cfg = compose("train", overrides=[
            *SMALL_WF, "features.horizon=2", f"tracking.store_dir={tmp / 'mlruns'}",
            "tracking.tracking_uri=null", f"data.quality_log={tmp / 'dq.jsonl'}",
            f"db.url=sqlite:///{tmp / 'brain.db'}"])
    result = run_config(cfg)
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp / "mlruns"))
    return result, client, tmp


def test_stitched_oos_metrics_equal_metrics_from_the_logged_returns(wf_run):
    result, client, tmp = wf_run
    run = client.get_run(result.run_id)
    ret = pd.read_parquet(client.download_artifacts(result.run_id,
                                                    "backtest/oos_returns.parquet", str(tmp)))
    assert list(ret.columns[:2]) == ["timestamp", "fold"]
    assert {"prediction", "position", "asset_return", "strategy_return"} <= set(ret.columns)
    assert ret.timestamp.is_monotonic_increasing and ret.timestamp.is_unique
    fee = float(run.data.params["backtest.fee"])
    assert run.data.params["backtest.fill"] == "next_open"
    assert (ret.exec_fill == "next_open").all()
    # the next-open fill with fee + 1 bps half-spread + 1 bps slippage per unit of turnover
    assert ret.exec_cost_lin.to_numpy() == pytest.approx(np.full(len(ret), fee + 2e-4))
    assert np.abs(ret.exec_gap).max() > 0  # the gap leg is the previous position's
    trades = trades_of(ret)
    m = compute_metrics(ret.strategy_return.to_numpy(), trades["return"].to_numpy(),
                        ret.prediction.to_numpy(), ret.label.to_numpy(),
                        bars_per_year("1h")).as_dict("oos_")
    for name, value in m.items():
        assert run.data.metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert run.data.metrics["oos_bars"] == len(ret)
    # the same positions filled one bar later (the fill-assumption check), from the same frame
    late = lagged_execution(ret.position.to_numpy(), bars_of_returns(ret), bars_per_year("1h"))
    assert run.data.metrics["oos_sharpe_lag1"] == pytest.approx(late["sharpe"], rel=1e-9)
    assert run.data.metrics["oos_total_return_lag1"] == pytest.approx(late["total_return"],
                                                                      rel=1e-9, abs=1e-12)
    # and filled at the signal bar's close with the fee only: what the backtest reported before
    close = execute(ret.position.to_numpy(), close_bars(pd.DatetimeIndex(ret.timestamp),
                                                        ret.asset_return.to_numpy(), fee),
                    bars_per_year("1h"))
    assert run.data.metrics["oos_sharpe_close"] == pytest.approx(close.metrics.sharpe, rel=1e-9)
    assert run.data.metrics["oos_total_return_close"] == pytest.approx(
        close.metrics.total_return, rel=1e-9, abs=1e-12)
    assert result.objective == "oos_composite_score"
    assert result.objective_value == pytest.approx(run.data.metrics["oos_composite_score"])
    # the OOS window diagnostics (per-fold IC mean and ICIR from the fold column) against buy &
    # hold on the same bars, and the cost-sensitivity plot
    hold = stages.buy_and_hold(bars_of_returns(ret), bars_per_year("1h"))
    diag = window_diagnostics(SimpleNamespace(returns=ret), hold, split="oos",
                              periods_per_year=bars_per_year("1h"))
    assert {"oos_breakeven_bps", "oos_ic", "oos_rank_ic", "oos_ic_mean", "oos_icir",
            "oos_excess_return", "oos_information_ratio"} <= set(diag)
    for name, value in diag.items():
        assert run.data.metrics[name] == pytest.approx(value, rel=1e-9, nan_ok=True), name
    assert run.data.metrics["oos_ic_folds"] == result.n_folds
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/cost_sensitivity_oos.png" in plots


def test_folds_table_and_the_registered_model_is_the_last_fold(wf_run):
    result, client, tmp = wf_run
    run = client.get_run(result.run_id)
    folds = pd.read_parquet(client.download_artifacts(result.run_id,
                                                      "walkforward/folds.parquet", str(tmp)))
    assert len(folds) == result.n_folds >= 3
    assert {"fold", "train_start", "train_end", "val_start", "val_end", "oos_start", "oos_end",
            "train_rows", "val_rows", "oos_rows", "fit_seconds", "sharpe", "composite_score",
            "n_trades"} <= set(folds.columns)
    reach = 2 * timeframe_to_timedelta("1h")  # label horizon 2
    assert (folds.train_end + reach < folds.val_start).all()
    assert (folds.val_end + reach < folds.oos_start).all()  # no OOS bar reached by its model
    assert (folds.oos_start.iloc[1:].to_numpy() > folds.oos_end.iloc[:-1].to_numpy()).all()
    # each stitched OOS trade belongs to exactly one fold (the one it was entered in)
    oos_trades = pd.read_parquet(client.download_artifacts(
        result.run_id, "backtest/oos_trades.parquet", str(tmp)))
    assert folds.n_trades.sum() == len(oos_trades) == run.data.metrics["oos_n_trades"] > 0
    assert (folds.fit_seconds > 0).all()
    last = folds.iloc[-1]
    tags = run.data.tags
    assert pd.Timestamp(tags["train_start"]) == last.train_start
    assert pd.Timestamp(tags["test_start"]) == last.oos_start
    assert tags["split_scheme"] == "walk_forward" and tags["split_step_bars"] == "30d"
    mv = client.get_model_version(result.registered_model, result.version)
    assert mv.tags["huracan.split_scheme"] == "walk_forward"
    assert manifest_value(client, mv, "train_start") == tags["train_start"]
    arts = {a.path for d in ("plots", "backtest", "walkforward", "shap")
            for a in client.list_artifacts(result.run_id, d)}
    assert {"plots/equity_drawdown_oos.png", "backtest/oos_trades.parquet",
            "shap/summary.png"} <= arts
    contexts = sorted(t.value for d in run.inputs.dataset_inputs for t in d.tags
                      if t.key == "mlflow.data.context")
    assert contexts == ["evaluation", "training", "validation"]


def test_two_model_sweep_under_the_joblib_launcher(tmp_path, train_cli):
    proc = train_cli(["model=lightgbm,xgboost", "hydra/launcher=joblib",
                      "hydra.launcher.n_jobs=2", *SMALL_WF, "-m"], tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("huracan").experiment_id])
    parents = [r for r in runs if r.data.tags.get("huracan.role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["model_type"] for r in children) == ["lightgbm", "xgboost"]
    assert parent.info.status == "FINISHED" and all(r.info.status == "FINISHED"
                                                    for r in children)
    summary = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep/summary.csv",
                                                    str(tmp_path)))
    candidates = summary[summary.status != "baseline"]
    assert sorted(candidates.model) == ["lightgbm", "xgboost"]
    assert set(candidates.run_id) == {r.info.run_id for r in children}
    assert list(summary[summary.status == "baseline"].model)[-1] == "cash"  # the floor, last
    # one gate decision, on the eligible child (>= 30 OOS trades) with the best OOS score,
    # recorded on the parent. Here LightGBM trades 3 times OOS (its higher composite is no
    # evidence) and XGBoost over 30: XGBoost is the one candidate, whatever LightGBM scored
    by_model = {r.data.tags["model_type"]: r for r in children}
    eligible = [m for m, r in by_model.items() if r.data.metrics["oos_n_trades"] >= 30]
    assert eligible == ["xgboost"] and by_model["lightgbm"].data.metrics["oos_n_trades"] < 30
    evs = events.history(make_engine(f"sqlite:///{tmp_path / 'brain.db'}"),
                         "huracan-BTCUSDT-1h")
    evs = [e for e in evs if e.alias == "production"]  # regime-<name> aliases aside
    assert len(evs) == 1
    best = by_model["xgboost"]
    assert parent.data.tags["huracan.gate.candidate_run_id"] == best.info.run_id
    assert parent.data.tags["huracan.gate.selected_on"] == "oos_composite_score"
    # one winner: the parent's best run is the gate's candidate, with its headline metrics;
    # LightGBM's higher score, when it is higher, is named as not eligible
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.tags["best_model"] == "xgboost"
    assert parent.data.metrics["best/oos_sharpe"] == best.data.metrics["oos_sharpe"]
    assert parent.data.metrics["best/oos_n_trades"] == best.data.metrics["oos_n_trades"]
    lgbm = by_model["lightgbm"].data.metrics
    if lgbm["oos_composite_score"] > best.data.metrics["oos_composite_score"]:
        assert parent.data.tags["top_ineligible_run_id"] == by_model["lightgbm"].info.run_id
        assert "trade(s) on oos < selection.min_trades 30" in \
            parent.data.tags["top_ineligible_reason"]
    else:
        assert "top_ineligible_run_id" not in parent.data.tags
    exp = client.get_experiment_by_name("huracan")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on its runs
    assert evs[0].run_id == best.info.run_id
    assert parent.data.tags["huracan.gate.decision"] == evs[0].event
    gate = json.loads((tmp_path / "multirun" / "gate.json").read_text())
    assert [d["decision"] for d in gate["decisions"]] == [evs[0].event]
    assert "lightgbm" in proc.stdout and "oos_sharpe" in proc.stdout


def test_no_secret_in_params_artifacts_tags_logs_or_hydra_files(tmp_path, train_cli):
    secret = "hunter2-s3cr3t"
    url = f"postgresql+psycopg2://huracan:{secret}@127.0.0.1:5432/nowhere"
    proc = train_cli(["model=lightgbm", "model.n_estimators=20", "explain.max_rows=10",
                      "importance.enabled=false", "registry.enabled=false",
                      f"db.url={url}", "alerts=telegram", f"alerts.token={secret}",
                      "alerts.chat_id=1", "-m"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert secret not in proc.stdout and secret not in proc.stderr
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and secret.encode()
             in p.read_bytes()]
    assert leaks == []  # MLflow's database (params, tags), artifacts, .hydra/*, job logs
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    run = next(r for r in client.search_runs(
        [client.get_experiment_by_name("huracan").experiment_id])
        if r.data.tags.get("huracan.role") != "sweep")
    assert run.data.params["alerts.token"] == "***"
    assert run.data.params["db.url"] == "postgresql+psycopg2://huracan:***@127.0.0.1:5432/nowhere"
    parent = next(r for r in client.search_runs(
        [client.get_experiment_by_name("huracan").experiment_id])
        if r.data.tags.get("huracan.role") == "sweep")
    assert "huracan:***@127.0.0.1" in parent.data.tags["sweep_overrides"]
    overrides = (next(tmp_path.rglob("overrides.yaml"))).read_text()
    assert "***@127.0.0.1" in overrides and "alerts.token=***" in overrides
