"""Serving the registered model on raw candles (:mod:`huracan.serving.raw`)."""

from huracan.serving.raw import (
    CANDLE_COLUMNS,
    OUTPUT_COLUMNS,
    ServingSpec,
    is_raw_candles,
    predict_candles,
)

__all__ = ["CANDLE_COLUMNS", "OUTPUT_COLUMNS", "ServingSpec", "is_raw_candles",
           "predict_candles"]
