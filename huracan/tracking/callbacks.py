"""Alias: the old home of the sweep callbacks, kept so Hydra configs of past runs
(``_target_: huracan.tracking.callbacks.SweepRun`` / ``MaskSecrets``) and old imports still
resolve. The callbacks live in :mod:`huracan.callbacks.sweep`, the result files in
:mod:`huracan.tracking.results`; new code imports from there."""

from huracan.callbacks.sweep import (
    BASELINE_STATUS,
    MaskSecrets,
    SweepRun,
    deflate_results,
    floor_line,
    format_table,
    install_log_masking,
    selection_returns,
    summary_frame,
)
from huracan.tracking.results import (
    RESULT_FILE,
    SWEEP_DIR_TAG,
    SWEEP_FILE,
    SWEEP_ROLE_TAG,
    find_parent_run,
    read_result,
    read_results,
    sweep_parent,
    write_json_atomic,
    write_result,
)

__all__ = [
    "BASELINE_STATUS", "RESULT_FILE", "SWEEP_DIR_TAG", "SWEEP_FILE", "SWEEP_ROLE_TAG",
    "MaskSecrets", "SweepRun", "deflate_results", "find_parent_run", "floor_line",
    "format_table", "install_log_masking", "read_result", "read_results", "selection_returns",
    "summary_frame", "sweep_parent", "write_json_atomic", "write_result",
]
