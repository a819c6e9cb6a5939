"""Alias: the old home of store ingest, kept so old imports still resolve. It lives in
:mod:`huracan.data.ingest`; new code imports from there."""

from huracan.data.ingest import (
    FEAR_GREED_SOURCE,
    KIND_TABLES,
    MAX_ABS_FUNDING_RATE,
    QUOTE_ASSETS,
    VADER_SOURCE,
    IngestReport,
    PreparedBatch,
    Rejection,
    classify_cascades,
    infer_from_filename,
    ingest_file,
    load_batch,
    normalize_symbol,
    prepare_file,
    prepare_frame,
    read_file,
)

__all__ = [
    "FEAR_GREED_SOURCE", "KIND_TABLES", "MAX_ABS_FUNDING_RATE", "QUOTE_ASSETS", "VADER_SOURCE",
    "IngestReport", "PreparedBatch", "Rejection", "classify_cascades", "infer_from_filename",
    "ingest_file", "load_batch", "normalize_symbol", "prepare_file", "prepare_frame", "read_file",
]
