"""A production model for the paper-trading and prediction-log tests: a small LightGBM trained
in-process (:func:`huracan.pipeline.run_job`) on REAL Binance BTC/USDT 1h candles from
../shared/data (train/val/test inside ``TRAIN_START .. TRAIN_END``), registered as
``huracan-BTCUSDT-1h`` with the ``production`` alias, so bars after ``TRAIN_END`` are unseen.

The rule is the default threshold rule at threshold 0 (long above 0, short below), so the model
trades on most bars, and the half-spread is estimated from the candles (Abdi & Ranaldo, trailing
168 bars): parity and ledger tests exercise fills and costs, not a flat book.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from huracan.config import register_resolvers
from huracan.pipeline import run_job
from huracan.registry.promotion import registered_model_name
from huracan.settings import JobSettings
from huracan.tracking.run import default_tracking_uri

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "ohlcv"
BTC_1H = SHARED / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
SYMBOL, TIMEFRAME = "BTC/USDT", "1h"
NAME = registered_model_name(SYMBOL, TIMEFRAME)
#: the model's data (train, validation, test): 120 days of 2019
TRAIN_START, TRAIN_END = pd.Timestamp("2019-01-01", tz="UTC"), pd.Timestamp("2019-05-01", tz="UTC")
#: cheap training: 20 trees, SHAP on 10 rows, permutation importance once on 50 rows
CHEAP = ["model=lightgbm", "model.n_estimators=20", "model.early_stopping_rounds=5",
         "model.min_child_samples=10", "model.n_jobs=1", "explain.max_rows=10",
         "importance.n_repeats=1", "importance.max_rows=50", "selection.min_trades=0",
         # trade on the sign of the forecast, and pay a spread estimated from the candles
         # (trailing windows: what live and replay must compute alike)
         "backtest.threshold=0.0", "backtest.half_spread=abdi_ranaldo"]


@dataclass(frozen=True)
class ProductionModel:
    """What :func:`train_production` made: the stores, the registered name/version/run."""

    tmp: Path
    tracking_uri: str
    db_url: str
    client: MlflowClient
    name: str
    version: str
    run_id: str
    candles: pd.DataFrame  #: every real 1h candle of the file (2018-2024, gaps left in)


def real_candles() -> pd.DataFrame:
    """The real BTC/USDT 1h candles (2018-2024, the exchange's gaps left in), UTC."""
    df = pd.read_parquet(BTC_1H)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df[["timestamp", "open", "high", "low", "close", "volume"]].reset_index(drop=True)


def train_production(tmp: Path, *overrides: str) -> ProductionModel:
    """Train, register and promote (alias ``production``) one LightGBM job on the real candles
    of ``TRAIN_START .. TRAIN_END``; MLflow store under ``tmp/mlruns``, brain store
    ``tmp/brain.db`` (SQLite, migrated by the job)."""
    candles = real_candles()
    part = candles[(candles.timestamp >= TRAIN_START) & (candles.timestamp < TRAIN_END)]
    data = tmp / "binance-spot_BTCUSDT_1h_train.parquet"
    part.to_parquet(data)
    register_resolvers()
    db_url = f"sqlite:///{tmp / 'brain.db'}"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"tracking.store_dir={tmp / 'mlruns'}", "tracking.tracking_uri=null",
            f"db.url={db_url}", f"data.path={data}", "data.timeframe=1h",
            f"data.quality_log={tmp / 'dq.jsonl'}", *CHEAP, *overrides])
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    resolved.pop("hydra", None)
    run_job(JobSettings.from_dict(resolved), resolved=resolved)
    uri = default_tracking_uri(tmp / "mlruns")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    mv = max(client.search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))
    client.set_registered_model_alias(NAME, "production", mv.version)
    return ProductionModel(tmp, uri, db_url, client, NAME, str(mv.version), str(mv.run_id),
                           candles)
