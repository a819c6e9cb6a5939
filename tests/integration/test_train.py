"""The real entry point: multirun into a temporary MLflow store, read back with MlflowClient."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from huracan import stages
from huracan.data.ohlcv import bars_per_year
from huracan.evaluation.diagnostics import window_diagnostics
from huracan.evaluation.execution import bars_of_returns
from huracan.evaluation.metrics import compute_metrics
from huracan.settings import JobSettings
from huracan.tracking.run import default_tracking_uri
from huracan.train import run_config

pytestmark = pytest.mark.slow

METRICS = ("sharpe", "sortino", "max_drawdown", "calmar", "profit_factor", "hit_ratio",
           "accuracy", "total_return", "n_trades", "composite_score")


@pytest.fixture(scope="module")
def gbdt_sweep(tmp_path_factory, train_cli):
    tmp = tmp_path_factory.mktemp("sweep")
    proc = train_cli(["model=lightgbm,xgboost", "-m"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp / "mlruns"))
    exp = client.get_experiment_by_name("huracan")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("huracan.role") == "sweep"]
    runs = [r for r in runs if r not in parents]
    assert len(parents) == 1 and all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
                                     for r in runs)
    return proc, client, runs, tmp


def test_multirun_logs_one_finished_run_per_job(gbdt_sweep):
    proc, _, runs, _ = gbdt_sweep
    assert sorted(r.data.tags["model_type"] for r in runs) == ["lightgbm", "xgboost"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.tags["symbol"] == "BTC/USDT" and r.data.tags["timeframe"] == "1h"
        for tag in ("dataset_sha256", "train_frame_sha256", "feature_list_sha256"):
            assert len(r.data.tags[tag]) == 64
        assert r.data.tags["train_start"] < r.data.tags["train_end"] < r.data.tags["val_start"]
        assert r.data.tags["val_end"] < r.data.tags["test_start"] < r.data.tags["test_end"]
        for split in ("val", "test"):
            for name in METRICS:
                assert f"{split}_{name}" in r.data.metrics
        # params are the flattened resolved config
        assert r.data.params["seed"] == "42"
        assert r.data.params["split.embargo"] == "None"  # = the label's reach
        assert r.data.tags["split_embargo"] == "None" and r.data.tags["label_kind"] == \
            "forward_return"
        assert r.data.params["model._target_"].startswith("huracan.models.")
    # the comparison table closes the sweep
    assert "val_sharpe" in proc.stdout and "lightgbm" in proc.stdout and "xgboost" in proc.stdout


def test_the_parent_names_one_winner_the_gate_judged(gbdt_sweep):
    """The experiment opens on its runs in the MLflow UI; the parent's best run is the gate's
    candidate (best eligible val score), never a higher ineligible one."""
    import json

    proc, client, runs, tmp = gbdt_sweep
    exp = client.get_experiment_by_name("huracan")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    tags, metrics = parent.data.tags, parent.data.metrics
    (decision,) = json.loads((tmp / "multirun" / "gate.json").read_text())["decisions"]
    eligible = [r for r in runs if r.data.metrics["val_n_trades"] >= 30]
    if not eligible:
        assert "best_run_id" not in tags and tags["best_note"].startswith("no winner")
        return
    best = max(eligible, key=lambda r: r.data.metrics["val_composite_score"])
    assert tags["best_run_id"] == best.info.run_id == decision["candidate_run_id"]
    assert tags["best_run_id"] == tags["huracan.gate.candidate_run_id"]
    assert metrics["best/val_sharpe"] == best.data.metrics["val_sharpe"]
    assert metrics["best/test_sharpe"] == best.data.metrics["test_sharpe"]
    assert "sweep winner: best val_composite_score" in proc.stdout
    # the sweep prints where its parent opens in the UI's Model training view
    link = f"#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}?workflowType=" \
        "machine_learning"
    assert link in proc.stdout


def test_artifacts_and_test_metrics_recomputed_from_returns(gbdt_sweep, tmp_path):
    _, client, runs, _ = gbdt_sweep
    for r in runs:
        files = {a.path for d in ("backtest", "shap", "plots", "config")
                 for a in client.list_artifacts(r.info.run_id, d)}
        files |= {a.path for a in client.list_artifacts(r.info.run_id, "data")}
        assert {"backtest/returns.parquet", "backtest/trades.parquet", "shap/summary.png",
                "data/eval_window.parquet",
                "shap/mean_abs_shap.csv", "plots/equity_drawdown_test.png",
                "config/resolved.yaml"} <= files
        local = client.download_artifacts(r.info.run_id, "backtest", str(tmp_path))
        ret = pd.read_parquet(f"{local}/returns.parquet")
        trades = pd.read_parquet(f"{local}/trades.parquet")
        assert {"timestamp", "position", "strategy_return"} <= set(ret.columns)
        assert {"entry_time", "exit_time", "side", "return"} <= set(trades.columns)
        window = pd.read_parquet(
            client.download_artifacts(r.info.run_id, "data/eval_window.parquet", str(tmp_path)))
        test_rows = window[window.split == "test"]
        assert test_rows.timestamp.tolist() == ret.timestamp.tolist()
        assert (window[window.split == "context"].timestamp < ret.timestamp.min()).all()
        assert ret.timestamp.min() >= pd.Timestamp(r.data.tags["test_start"])
        assert ret.timestamp.max() <= pd.Timestamp(r.data.tags["test_end"])
        # the logged test metrics come from these very returns
        m = compute_metrics(ret.strategy_return.to_numpy(), trades["return"].to_numpy(),
                            ret.prediction.to_numpy(), ret.asset_return.to_numpy(),
                            bars_per_year("1h")).as_dict("test_")
        for name in ("test_sharpe", "test_max_drawdown", "test_total_return", "test_n_trades",
                     "test_profit_factor", "test_accuracy"):
            assert r.data.metrics[name] == pytest.approx(m[name], rel=1e-9, abs=1e-12)
        # every scored window logs its diagnostics and cost-sensitivity plot; the test ones
        # come from these returns, buy & hold executed on the same bars
        assert {"plots/cost_sensitivity_val.png", "plots/cost_sensitivity_test.png"} <= files
        for split in ("val", "test"):
            for name in ("breakeven_bps", "ic", "rank_ic", "excess_return",
                         "information_ratio"):
                assert f"{split}_{name}" in r.data.metrics
        hold = stages.buy_and_hold(bars_of_returns(ret), bars_per_year("1h"))
        diag = window_diagnostics(SimpleNamespace(returns=ret), hold, split="test",
                                  periods_per_year=bars_per_year("1h"))
        for name, value in diag.items():
            assert r.data.metrics[name] == pytest.approx(value, rel=1e-9, nan_ok=True), name
        imp = pd.read_csv(client.download_artifacts(r.info.run_id, "shap/mean_abs_shap.csv",
                                                    str(tmp_path)))
        assert list(imp.columns) == ["feature", "mean_abs_shap"]
        assert imp.mean_abs_shap.is_monotonic_decreasing and imp.mean_abs_shap.iloc[0] > 0
        assert len(imp) == int(r.data.tags["n_features"])  # every model input, ranked


def test_logged_model_loads_with_pyfunc_and_predicts(gbdt_sweep):
    import mlflow

    _, client, runs, tmp = gbdt_sweep
    mlflow.set_tracking_uri(default_tracking_uri(tmp / "mlruns"))
    r = runs[0]
    logged = client.search_logged_models([r.info.experiment_id],
                                         filter_string=f"source_run_id='{r.info.run_id}'")
    assert len(logged) == 1
    model = mlflow.pyfunc.load_model(logged[0].model_uri)
    names = model.metadata.get_input_schema().input_names()
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(7, len(names))), columns=names)
    pred = model.predict(X)
    assert np.asarray(pred).shape == (7,) and np.isfinite(pred).all()


#: the stages a job times (result.json ``timings``, run metrics ``time/<stage>_s``): the
#: MLflow bookkeeping split by kind, so the zoo and parity benchmarks can report each step
STEP_TIMINGS = ("data", "features", "execution", "folds", "fit", "predict", "backtest", "shap",
                "importance", "logging", "registry", "tracking_setup", "log_params", "log_tags",
                "log_metrics", "log_datasets", "log_artifacts", "log_plots", "log_model")


def test_metrics_are_written_once_and_linked_to_the_logged_model(gbdt_sweep):
    """The evaluation metrics go in one batch after the model is logged (MLflow's log_model no
    longer re-reads and re-writes each of them): one history entry per metric, and the run's
    logged model carries every val/test metric the run has, with the same value."""
    _, client, runs, _ = gbdt_sweep
    for r in runs:
        logged = client.search_logged_models([r.info.experiment_id],
                                             filter_string=f"source_run_id='{r.info.run_id}'")
        assert len(logged) == 1
        model_id = logged[0].model_id
        scored = {k for k in r.data.metrics if k.startswith(("val_", "test_"))
                  and "_dsr" not in k}  # the sweep's deflation, logged after the job
        assert {f"{split}_{name}" for split in ("val", "test") for name in METRICS} <= scored
        for key in ("val_sharpe", "test_composite_score", "test_n_trades"):
            assert len(client.get_metric_history(r.info.run_id, key)) == 1, key
        linked = {m.key: m.value for m in client.get_logged_model(model_id).metrics or []}
        assert scored <= set(linked)
        assert all(linked[k] == r.data.metrics[k] for k in scored)
        assert {"labels/dropped_gap", "importance/baseline_loss"} <= set(r.data.metrics)
        assert {f"time/{k}_s" for k in STEP_TIMINGS} <= set(r.data.metrics)


def test_bad_input_file_exits_non_zero_with_one_line_reason(tmp_path, sample_path, train_cli):
    df = pd.read_parquet(sample_path).iloc[:3000].copy()
    df.loc[100, "close"] = -5.0
    bad = tmp_path / "bad.parquet"
    df.to_parquet(bad)
    proc = train_cli([f"data.path={bad}"], tmp_path)
    assert proc.returncode != 0
    out = (proc.stdout + proc.stderr).splitlines()
    lines = [ln for ln in out if "[rule: positive_price]" in ln]
    assert lines and "column 'close' row 100" in lines[0] and str(bad) in lines[0]
    assert '"issue_type": "positive_price"' in (tmp_path / "dq.jsonl").read_text()


def test_failed_job_ends_failed_and_sweep_goes_on(tmp_path, sample_path, train_cli):
    df = pd.read_parquet(sample_path).copy()
    bad = tmp_path / "bad.parquet"
    df.drop(columns=["volume"]).to_parquet(bad)
    proc = train_cli([f"data.path={bad},{sample_path}", "model=lightgbm", "-m"], tmp_path)
    assert proc.returncode != 0  # the sweep reports the failure at its end
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("huracan").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("huracan.role") == "sweep"]
    assert parent.info.status == "FAILED"  # the sweep had a failed job
    runs = [r for r in runs if r is not parent]
    by_path = {r.data.tags["data_path"]: r.info.status for r in runs}
    assert by_path == {str(bad): "FAILED", str(sample_path): "FINISHED"}


def test_same_seed_reproduces_metrics(compose_cfg):
    cfg = compose_cfg("model=xgboost", "tracking.log_model=false", "explain.max_rows=50")
    a = run_config(cfg)
    b = run_config(cfg)
    assert a.run_id != b.run_id
    assert a.metrics == b.metrics


def _settings(cfg):
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return JobSettings.from_dict(resolved)


def test_scaler_is_fit_on_train_rows_only(compose_cfg):
    s = _settings(compose_cfg("model.n_estimators=5"))
    fs = stages.build_features(stages.load_validated(s.data), s.data.timeframe, s.features)
    fold = s.split.folds(fs.frame.index, s.data.timeframe, fs.horizon)[0]
    X = fs.X.copy()
    X[fold.train.stop :] *= 1000.0  # rows after train must not move the scaler
    moved = stages.fit_fold(s.make_model(), X, fs.y, fold, fs.feature_names, keep=True)
    kept = stages.fit_fold(s.make_model(), fs.X, fs.y, fold, fs.feature_names, keep=True)
    train = fs.X[fold.train.start : fold.train.stop]
    np.testing.assert_allclose(kept.scaler.mean_, train.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(moved.scaler.mean_, kept.scaler.mean_, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(moved.scaler.scale_, kept.scaler.scale_, rtol=1e-12)


def test_training_refuses_degraded_data_unless_allowed(compose_cfg, sample_path, tmp_path):
    from huracan.data.validate import DegradedDataError

    df = pd.read_parquet(sample_path)
    hour = df.timestamp.dt.floor("1h")
    hours = pd.Series(hour.unique())
    # three outages of 400 hours each: 20 % of the hours missing, long gap-free runs left
    dropped = pd.concat([hours.iloc[s : s + 400] for s in (1000, 2500, 4000)])
    holed = tmp_path / "holed.parquet"
    df[~hour.isin(set(dropped))].to_parquet(holed)
    with pytest.raises(DegradedDataError, match="coverage"):
        stages.load_validated(_settings(compose_cfg(f"data.path={holed}")).data)
    candles = stages.load_validated(
        _settings(compose_cfg(f"data.path={holed}", "data.allow_degraded=true")).data)
    assert len(candles) > 0
    logged = (tmp_path / "dq.jsonl").read_text()
    assert "coverage" in logged
