"""Alias: the old home of the ``cash`` policy's pyfunc class. Cash versions registered before it
moved pickled it as ``huracan.serving.cash.CashPyfunc``, so this path must keep resolving. It
lives in :mod:`huracan.registry.cash_model`; new code imports from there."""

from huracan.registry.cash_model import (
    CASH_OUTPUT_COLUMNS,
    DEFAULT_REASON,
    POLICY_TAG,
    REASON_TAG,
    REASON_TTL_S,
    CashPyfunc,
    cash_answer,
    is_candle_request,
)

__all__ = ["CASH_OUTPUT_COLUMNS", "DEFAULT_REASON", "POLICY_TAG", "REASON_TAG", "REASON_TTL_S",
           "CashPyfunc", "cash_answer", "is_candle_request"]
