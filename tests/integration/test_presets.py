"""Every preset in ``experiments/`` runs end to end on a small real slice (DESIGN.md convention 19).

Each preset runs as a user runs it, ``python -m huracan.train experiment=<name> ... -m``, with its
WHOLE sweep grid (every job of ``hydra.sweeper.params``), its Hydra callbacks (sweep parent run,
registry gate, regime aliases) and its gate, made small by overrides of keys the config already
has (no ``+``/``++``, so Hydra refuses a key that does not exist):

- :data:`SLICES`: per preset, the overrides that make its windows small (walk-forward
  ``split.oos_start/oos_end`` covering 1-5 folds of the preset's own train/val/step windows) and
  what its gate is expected to see on that slice;
- :data:`MODEL_SLICES`: per model, fewer trees or one epoch on short windows. A sweep over
  ``model=lightgbm,lstm`` cannot take ``model.epochs=1`` (LightGBM has no such key), so each model
  of the grid runs as ``<model>_slice``: a config written into the test's search path
  (``hydra.searchpath``) whose defaults are the model's own ``conf/model/<model>.yaml`` with
  :data:`MODEL_SLICES` merged over it; the preset's own model keys still merge last.

Threads are capped at one per process as the nightly caps its workers
(huracan/orchestration/steps.py: ``HURACAN_N_JOBS``, ``OMP_NUM_THREADS``, TensorFlow's thread
pools): on this shared 2-core box (load 7) a LightGBM fit of 500 trees on 7,000 rows took 69 s
with two threads against 2.2 s with one, and a one-epoch LSTM fit 35 s against 11 s. The
full-size runs stay in benchmarks/.

``experiments/nightly/*`` runs through ``python -m huracan.nightly`` in tests/integration/
test_nightly.py (a whole night on the shipped sample); :func:`test_every_preset_has_a_slice`
checks that test names the preset, so no preset escapes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.tracking import MlflowClient
from runners import REPO, run_module  # tests/integration/runners.py

from huracan.config import register_resolvers, shared_data_root
from huracan.regime.detection import REGIMES
from huracan.regime.registry import current_map
from huracan.tracking.run import default_tracking_uri

EXPERIMENTS = REPO / "experiments"
PRESETS = sorted(p.relative_to(EXPERIMENTS).with_suffix("").as_posix()
                 for p in EXPERIMENTS.rglob("*.yaml"))
NIGHTLY_TEST = "tests/integration/test_nightly.py::test_nightly_offline_then_rerun_only_reports"
#: SHAP and permutation importance on a few of the rows the preset itself explains and ranks
COMMON = ("explain.max_rows=10", "importance.n_repeats=1", "importance.max_rows=50")
#: one thread per process, as huracan.orchestration.steps caps the nightly's workers
THREADS = {"HURACAN_N_JOBS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}


def seed_liquidation_store(tmp: Path) -> None:
    """The brain store ``cascade_variants`` reads (``features.sources=store``), seeded from
    ../shared/data, and the candles it trains on.

    The only recorded liquidations with BTC/USDT candles beside them are the Binance USDT-M
    per-minute aggregates of 2024-12-10 11:02-16:30 UTC (11 BTC cascades under the default rule:
    >= 20 events or >= $250k within 5 minutes). The candles are BTC/USDT 1h spot 2024-11-01 ..
    2024-12-31 (1,464 bars), so that the forward split's train rows (2024-11-07 .. 2024-12-15,
    after the features' warm-up) hold those hours and the ``cascade`` variant has rows to learn
    from. The store gets BTC/USDT funding rates, daily open interest, the Fear & Greed index and the
    liquidations: each minute bucket of ``n`` forced orders of one side becomes ``n`` events
    (1 ms apart, USD split evenly, price = the close of the hour before), so both the event
    count and the USD of the cascade rule are kept.
    """
    from huracan.data.ingest import ingest_file
    from huracan.db import migrate
    from huracan.db.session import make_engine

    shared = Path(shared_data_root())
    spot = pd.read_parquet(shared / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet")
    spot[spot.timestamp >= pd.Timestamp("2024-11-01", tz="UTC")].to_parquet(
        tmp / "btc_1h_2024-11_2024-12.parquet")
    agg = pd.read_parquet(shared / "liquidations"
                          / "binance-usdm_30sym_liquidations-1min-agg_20241210-20241210.parquet")
    agg = agg[agg.symbol == "BTCUSDT"]
    close = spot.set_index("timestamp")["close"]
    rows = []
    for side, usd, count in (("SELL", "liq_sell_usd", "liq_sell_count"),
                             ("BUY", "liq_buy_usd", "liq_buy_count")):
        for t, total, n in agg.loc[agg[count] > 0, ["timestamp", usd, count]].itertuples(
                index=False):
            price = float(close[pd.Timestamp(t).floor("h") - pd.Timedelta("1h")])
            rows += [(pd.Timestamp(t) + pd.Timedelta(milliseconds=i), "BTCUSDT", side, price,
                      total / n / price, total / n) for i in range(int(n))]
    events = tmp / "btc_liquidations_20241210.parquet"
    pd.DataFrame(rows, columns=["timestamp", "symbol", "side", "price", "quantity",
                                "size_usd"]).to_parquet(events)
    engine = make_engine(f"sqlite:///{tmp / 'brain.db'}")
    try:
        migrate.upgrade(engine)
        for kind, path, kw in (
                ("funding", shared / "derivatives"
                 / "binance-usdm_BTCUSDT_funding_20190910-20241231.parquet", {}),
                ("open-interest", shared / "derivatives"
                 / "unknown-agg_BTC_open-interest-1d_20190330-20241120.parquet",
                 {"exchange": "aggregate", "symbol": "BTC/USDT"}),
                ("sentiment", shared / "sentiment"
                 / "alternative-me_fear-greed-1d_20200101-20241231.parquet", {}),
                ("liquidations", events, {"exchange": "binance"})):
            report = ingest_file(engine, kind, path, **kw)
            assert report.inserted > 0 and not report.rejections, report.summary()
    finally:
        engine.dispose()


def read_the_store(children: list) -> None:
    """The jobs' family features came from the seeded store (``features.sources=store``; an
    empty store covers no bar), one job per variant (``train.rows``)."""
    for run in children:
        coverage = json.loads(run.data.tags["family_coverage"])
        assert coverage["liquidations"] > 0 and coverage["funding"] > 0, coverage
    assert sorted(r.data.tags["train_rows"] for r in children) == ["cascade", "normal"]


def check_pooled_runs(children: list) -> None:
    """The pooled job: one run over its three symbols, each scored as ``<PAIR>/<metric>`` beside
    the portfolio's headline, the per-symbol cash floor in its tags."""
    (run,) = children
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["pooled"] == "true" and tags["symbols"] == "BTC/USDT,ETH/USDT,LTC/USDT"
    assert set(json.loads(tags["cash_floor"])) == {"BTC/USDT", "ETH/USDT", "LTC/USDT"}
    for pair in ("BTCUSDT", "ETHUSDT", "LTCUSDT"):
        assert f"{pair}/oos_sharpe" in metrics and f"{pair}/oos_buy_hold_sharpe" in metrics
    assert metrics["oos_n_symbols"] == 3.0
    assert metrics["oos_n_trades"] == sum(metrics[f"{p}/oos_n_trades"]
                                          for p in ("BTCUSDT", "ETHUSDT", "LTCUSDT"))


def read_context_features(children: list) -> None:
    """The job built the context (ETH beside the BTC target, which skips itself) and the 4h /
    1d higher-timeframe columns: 21 own + 18 ``ctx_ETHUSDT_*`` + 2 x 14 ``htf_<tf>_*``."""
    from urllib.parse import unquote, urlparse

    from huracan.features.naming import family_totals

    (run,) = children
    root = Path(unquote(urlparse(run.info.artifact_uri).path))
    names = (root / "features" / "feature_list.txt").read_text().split()
    counts = family_totals((n, 1.0) for n in names)
    assert counts == {"own": 21, "context": 18, "higher_timeframe": 28}, counts
    assert "ctx_ETHUSDT_beta_168" in names and not any(n.startswith("ctx_BTCUSDT") for n in names)
    assert run.data.tags["n_features"] == str(len(names))
    serve_context_model(run, root)


def serve_context_model(run, artifacts: Path) -> None:
    """The logged pyfunc answers raw BTC candles plus ``ctx_ETHUSDT_close`` (its spec's
    ``context_columns``), and refuses a request without that column."""
    import mlflow

    from huracan.data.candle_request import InputRuleError

    store = next(p for p in artifacts.parents if p.name == "mlruns")
    shared = Path(shared_data_root()) / "ohlcv"
    bars = {pair: pd.read_parquet(shared / f"binance-spot_{pair}_1h_20180101-20241231.parquet")
            .set_index("timestamp").loc["2024-06-01":"2024-08-30"]
            for pair in ("BTCUSDT", "ETHUSDT")}
    request = bars["BTCUSDT"].reset_index()
    request["ctx_ETHUSDT_close"] = bars["ETHUSDT"]["close"].reindex(
        request["timestamp"]).to_numpy()
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(default_tracking_uri(store))
    try:
        model = mlflow.pyfunc.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
    finally:
        mlflow.set_tracking_uri(before)
    spec = model.unwrap_python_model().spec
    assert spec.context_columns == ["ctx_ETHUSDT_close"] and spec.family_columns == []
    assert spec.warmup_bars > 30 * 24  # the 1d higher timeframe's warm-up
    out = model.predict(request)
    assert len(out) > 24 * 30 and out["forecast"].notna().all()
    with pytest.raises(InputRuleError, match="ctx_ETHUSDT_close"):
        model.predict(request.drop(columns=["ctx_ETHUSDT_close"]))


@dataclass(frozen=True)
class Slice:
    """How one preset runs small.

    Attributes:
        overrides: Hydra overrides of the preset's own keys (``{tmp}`` = the test's directory).
        candidate: the slice gives the gate an eligible candidate (>= ``selection.min_trades``
            trades on its selection window) for at least one registered model, so the gate
            and (with regimes on) the regime aliases decide; else every decision is a skip.
        setup: prepares ``tmp`` before the run (a seeded brain store).
        check: more checks of the preset's own behaviour, on its jobs' MLflow runs.
        multirun: ``-m`` (a sweep); a tuned preset is one training job.
        xfail: a known breakage being fixed elsewhere (the test must fail until it is merged).
        covered_by: another test runs this preset (the nightly's).
    """

    overrides: tuple[str, ...] = ()
    candidate: bool = True
    setup: Callable[[Path], None] | None = None
    check: Callable[[list], None] | None = None
    multirun: bool = True
    xfail: str | None = None
    covered_by: str | None = None


#: THE table: every file of experiments/ (test_every_preset_has_a_slice fails on one missing)
SLICES: dict[str, Slice] = {
    # the two variants on the hours of recorded liquidations (seed_liquidation_store); neither
    # trades 30 times on its 193 validation bars (0 and 1 trades), so the gate records a skip
    "cascade_variants": Slice(("data.path={tmp}/btc_1h_2024-11_2024-12.parquet",),
                              candidate=False, setup=seed_liquidation_store,
                              check=read_the_store),
    # the whole preset (forward split on the ETH sample at 4h): no tree trades on its 198
    # validation bars, at the preset's 500 trees too, so the gate records a skip
    "eth_gbdt_4h": Slice(candidate=False),
    # 365d/60d windows, monthly steps: 2 folds (2024-01-01 .. 2024-02-15), 6 jobs
    "evidence_gbdt_wf": Slice(("split.oos_start=2024-01-01", "split.oos_end=2024-02-15")),
    # quarterly steps: 1 fold (2024-06-01 .. 2024-08-30), 5 models x 2 feature sets
    "features_btc_1h_wf": Slice(("split.oos_start=2024-06-01", "split.oos_end=2024-08-30")),
    # quarterly steps: 1 fold (2024-06-01 .. 2024-08-30), LightGBM with BTC/ETH context + 4h/1d
    "context_1h_wf": Slice(("split.oos_start=2024-06-01", "split.oos_end=2024-08-30"),
                           check=read_context_features),
    # daily steps on 5m candles: 5 folds (2018-01-20 .. 2018-01-25): 3 of the 7 pairs reach
    # 30 OOS trades, so the gate and its regime aliases decide (2 folds: at most 10 trades)
    # (no high or extreme bar in these days: those regimes fall back, the gate still decides)
    "freqai_parity": Slice(("split.oos_end=2018-01-25",)),
    "labels_btc_1h": Slice(),
    # quarterly steps: 2 folds (2024-01-01 .. 2024-04-15): the second is the first whose
    # per-regime choice rests on an earlier fold
    "regimes_1h_wf": Slice(("split.oos_start=2024-01-01", "split.oos_end=2024-04-15")),
    # quarterly steps: 2 pooled folds (2024-04-01 .. 2024-08-30), one LightGBM on the rows of
    # BTC, ETH and LTC; the portfolio trades well over 30 times: the gate decides on the pool
    "pooled_1h_wf": Slice(("split.oos_start=2024-04-01", "split.oos_end=2024-08-30"),
                          check=check_pooled_runs),
    # monthly steps: 2 folds (2024-01-01 .. 2024-02-05), each fitting its rule on its own val
    "rules_1h_wf": Slice(("split.oos_start=2024-01-01", "split.oos_end=2024-02-05")),
    # the grid rules (validated_threshold, barrier, meta) go flat on the sample (no threshold
    # beats cash on validation) and the fixed threshold trades 16 times (< 30): the gate skips
    "rules_btc_1h": Slice(candidate=False),
    # weekly steps: 2 folds (2024-08-01 .. 2024-08-15)
    "walkforward_btc_1h": Slice(("split.oos_start=2024-08-01", "split.oos_end=2024-08-15")),
    "zoo_btc_1h": Slice(),
    "tuned/btcusdt_1h_lightgbm": Slice(multirun=False),
    # one epoch of the tuned network trades once on validation: the gate records a skip
    "tuned/btcusdt_1h_lstm": Slice(multirun=False, candidate=False),
    "nightly/sample": Slice(covered_by=NIGHTLY_TEST),
}

#: per model: few trees, or one epoch of a narrow network on short windows (conf/model keys)
MODEL_SLICES: dict[str, dict[str, object]] = {
    "lightgbm": {"n_estimators": 100, "log_period": 0},
    "xgboost": {"n_estimators": 100, "log_period": 0},
    "lstm": {"epochs": 1, "lookback": 8, "batch_size": 256, "units": 4, "num_layers": 1,
             "attention_units": 4, "head_units": 4, "verbose": 0},
    "cnn": {"epochs": 1, "lookback": 8, "batch_size": 256, "filters": 4, "num_layers": 1,
            "head_units": 4, "verbose": 0},
    "transformer": {"epochs": 1, "lookback": 8, "batch_size": 256, "d_model": 8,
                    "num_heads": 1, "ff_dim": 8, "num_layers": 1, "head_units": 4,
                    "verbose": 0},
}


def _compose(name: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)


def _grid(cfg) -> tuple[list[str], list[tuple[str, ...]]]:
    """The preset's sweep keys and every job of its grid (values as Hydra passes them), with
    each model as its slice; one job of the preset's own model without a sweep."""
    params = dict(cfg.hydra.sweeper.params or {})
    params.setdefault("model", cfg.hydra.runtime.choices.model)
    parser = OverridesParser.create()
    keys, values = [], []
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        vals = list(override.sweep_string_iterator()) if override.is_sweep_override() \
            else [override.get_value_element_as_str()]
        keys.append(key)
        values.append([f"{v}_slice" for v in vals] if key == "model" else vals)
    return keys, list(itertools.product(*values))


def _model_slices(root: Path, models: set[str]) -> Path:
    """``<root>/model/<model>_slice.yaml`` for each model: the model's config, then
    :data:`MODEL_SLICES`; returns the search-path directory."""
    for model in models:
        base = model.removesuffix("_slice")
        text = yaml.safe_dump({"defaults": [base, "_self_"], **MODEL_SLICES[base]},
                              sort_keys=False)
        (root / "model").mkdir(parents=True, exist_ok=True)
        (root / "model" / f"{model}.yaml").write_text(text)
    return root


def _runs(tmp: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp / "mlruns"))
    exp = client.get_experiment_by_name("huracan")
    assert exp is not None, "no MLflow experiment was written"
    return client, client.search_runs([exp.experiment_id])


def test_every_preset_has_a_slice():
    assert PRESETS and set(SLICES) == set(PRESETS), (
        f"presets without a slice in SLICES: {sorted(set(PRESETS) - set(SLICES))}; "
        f"slices without a preset: {sorted(set(SLICES) - set(PRESETS))}")
    for name, sl in SLICES.items():
        # plain overrides only: Hydra refuses one whose key the config does not have
        assert not [o for o in sl.overrides if o[0] in "+~"], name
        if sl.covered_by is not None:
            path, test = sl.covered_by.split("::")
            text = (REPO / path).read_text()
            assert f"def {test}(" in text and f"experiment={name}" in text, sl.covered_by
        elif name.startswith("nightly/"):
            pytest.fail(f"{name}: a nightly preset runs through python -m huracan.nightly, "
                        "name the test that runs it in covered_by")
        else:  # every model of the grid has a slice
            keys, jobs = _grid(_compose(name))
            models = {job[keys.index("model")].removesuffix("_slice") for job in jobs}
            assert models <= set(MODEL_SLICES), f"{name}: no MODEL_SLICES entry for " \
                                                f"{sorted(models - set(MODEL_SLICES))}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=SLICES[name].xfail))
    if SLICES[name].xfail else name
    for name in PRESETS if name in SLICES and SLICES[name].covered_by is None])
def test_preset_runs_end_to_end_on_a_small_slice(name, tmp_path):
    sl = SLICES[name]
    cfg = _compose(name)
    keys, jobs = _grid(cfg)
    models = list(dict.fromkeys(job[keys.index("model")] for job in jobs))  # the grid's order
    search = _model_slices(tmp_path / "slices", set(models))
    if sl.setup is not None:
        sl.setup(tmp_path)
    args = [f"experiment={name}", f"model={','.join(models)}",
            f"hydra.searchpath=[file://{search}]", *COMMON,
            *(o.format(tmp=tmp_path) for o in sl.overrides),
            f"data.quality_log={tmp_path / 'dq.jsonl'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_module("huracan.train", [*args, *(["-m"] if sl.multirun else [])], tmp_path,
                      timeout=1800, env=THREADS)
    assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    print("\n".join(line for line in proc.stdout.splitlines() if line.startswith("registry:")))
    client, runs = _runs(tmp_path)
    if not sl.multirun:
        _check_single_job(name, cfg, sl, tmp_path, client, runs)
        return
    sweep = tmp_path / "multirun"
    ran, results = [], []
    for job_dir in sorted(p.parent for p in sweep.glob("*/.hydra")):
        given = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        swept = dict(o.split("=", 1) for o in given if o.split("=", 1)[0] in keys)
        ran.append(tuple(swept[k] for k in keys))
        results.append(json.loads((job_dir / "result.json").read_text()))
    # every job of the grid ran once and ended ok
    assert sorted(ran) == sorted(jobs), f"{name}: jobs {sorted(ran)} != grid {sorted(jobs)}"
    failed = {job: r.get("error") for job, r in zip(ran, results, strict=True)
              if r["status"] != "ok"}
    assert not failed, failed
    # one finished parent run, the jobs' runs nested under it
    parent_id = json.loads((sweep / "sweep.json").read_text())["run_id"]
    parents = [r for r in runs if r.data.tags.get("huracan.role") == "sweep"]
    assert [p.info.run_id for p in parents] == [parent_id]
    assert parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert sorted(r.info.run_id for r in children) == sorted(r["run_id"] for r in results)
    assert all(r.info.status == "FINISHED" for r in children)
    assert sorted(r.data.tags["model_type"] for r in children) == sorted(
        job[keys.index("model")].removesuffix("_slice") for job in jobs)
    if sl.check is not None:
        sl.check(children)
    gate = sweep / "gate.json"
    if not cfg.registry.enabled:  # a comparison preset touches no registry
        assert not gate.exists() and not client.search_registered_models()
        return
    decisions = json.loads(gate.read_text())["decisions"]
    names = {r["registered_model"] for r in results}
    assert sorted(d["model"] for d in decisions) == sorted(names)  # one decision per model
    gated = [d for d in decisions if d["candidate_run_id"]]
    assert bool(gated) == sl.candidate, decisions
    for d in decisions:
        assert d["decision"] in ("promoted", "rejected", "skipped"), d
        if not d["candidate_run_id"]:
            assert d["decision"] == "skipped" and d["version"] == "", d
    prefix = "huracan.gate" if len(decisions) == 1 else None
    tags = client.get_run(parent_id).data.tags
    for d in decisions:
        assert tags[f"{prefix or 'huracan.gate.' + d['model']}.decision"] == d["decision"]
    if cfg.regime.kind != "none":  # the regime aliases of every gated candidate's model
        for d in gated:
            regime_map = current_map(client, d["model"])
            assert regime_map and set(regime_map) <= set(REGIMES), regime_map
            assert {e["decision"] for e in regime_map.values()} <= {"promoted", "rejected",
                                                                    "skipped", "cash"}, regime_map
            for e in regime_map.values():  # a cash regime holds no version
                assert (e["decision"] == "cash") == (e["model"] == "cash"), e
                assert e["decision"] != "cash" or e["version"] is None, e


def _check_single_job(name: str, cfg, sl: Slice, tmp: Path, client: MlflowClient,
                      runs: list) -> None:
    """One training job: its ``result.json``, its finished run, and the gate's decisions on its
    registered version (production, and the regime aliases) in the brain store's history."""
    from huracan.db.session import make_engine
    from huracan.registry import events

    result = json.loads((tmp / "run" / "result.json").read_text())
    assert result["status"] == "ok", result
    assert [r.info.run_id for r in runs] == [result["run_id"]]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["model_type"] == cfg.hydra.runtime.choices.model
    assert cfg.registry.enabled, f"{name}: a single job without a registry has no gate"
    engine = make_engine(f"sqlite:///{tmp / 'brain.db'}")
    try:
        history = events.history(engine, result["registered_model"])
    finally:
        engine.dispose()
    production = [e for e in history if e.alias == "production"]
    assert len(production) == 1, history
    if not sl.candidate:
        assert production[0].event == "skipped" and production[0].candidate_version is None
        return
    assert production[0].candidate_version == result["version"], production
    if cfg.regime.kind != "none":
        aliases = {e.alias for e in history} - {"production"}
        assert aliases <= {f"regime-{r}" for r in REGIMES}, history
        regime_map = current_map(client, result["registered_model"])
        assert regime_map, "no regime map"
        # every model choice met the gate; a cash regime takes none
        assert {f"regime-{r}" for r, e in regime_map.items() if e["decision"] != "cash"} \
            == aliases
