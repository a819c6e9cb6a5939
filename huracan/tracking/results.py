"""Result files of Hydra jobs and sweeps: each job's ``result.json`` in its output dir, the
sweep's ``sweep.json`` (its MLflow parent run) in the sweep dir, and the atomic JSON writer
they share.

Launcher-agnostic by construction (see :mod:`huracan.callbacks.sweep`): jobs under Hydra's
joblib and ray launchers run in other processes, so results travel through these files, never
through memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huracan.io import atomic_write_text

RESULT_FILE = "result.json"
SWEEP_FILE = "sweep.json"
SWEEP_ROLE_TAG = "huracan.role"
SWEEP_DIR_TAG = "huracan.sweep_dir"


# ----------------------------------------------------------------------------- files
def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically and durably (:func:`huracan.io.atomic_write`): a reader, or a rerun
    after a crash, never sees half a file. Values JSON lacks are written as floats (NumPy
    scalars) or, failing that, as text (timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(value: Any) -> Any:
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value)

    atomic_write_text(path, json.dumps(payload, indent=2, default=default))


write_json_atomic = _write_json


def write_result(output_dir: str | Path, payload: dict[str, Any]) -> None:
    """Write a job's ``result.json`` into its output dir."""
    _write_json(Path(output_dir) / RESULT_FILE, payload)


def read_result(output_dir: str | Path) -> dict[str, Any] | None:
    """The ``result.json`` of one job's output dir (``None`` when absent)."""
    path = Path(output_dir) / RESULT_FILE
    if not path.exists():
        return None
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def read_results(sweep_dir: str | Path, sweep_id: str | None = None) -> list[dict[str, Any]]:
    """Every job result under ``sweep_dir`` (``*/result.json``), in job order; with ``sweep_id``
    only those written by that sweep (a reused sweep dir keeps older results)."""
    out = []
    for path in sorted(Path(sweep_dir).glob(f"*/{RESULT_FILE}")):
        r = json.loads(path.read_text())
        if sweep_id is None or r.get("sweep_id") == sweep_id:
            out.append(r)
    return sorted(out, key=lambda r: int(r.get("job", 0)))


def sweep_parent(sweep_dir: str | Path) -> dict[str, Any] | None:
    """The sweep's parent-run record (``run_id``, ``sweep_id``, ``tracking_uri``) from
    ``<sweep_dir>/sweep.json``, or ``None``."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def find_parent_run(sweep_dir: str | Path) -> str | None:
    """The RUNNING sweep run tagged with ``sweep_dir`` on the current tracking store (for a
    worker that cannot read the sweep dir), or ``None``."""
    import mlflow

    runs = mlflow.search_runs(
        search_all_experiments=True, output_format="list", max_results=1,
        filter_string=(f"tags.`{SWEEP_DIR_TAG}` = '{Path(sweep_dir).resolve()}' and "
                       f"tags.`{SWEEP_ROLE_TAG}` = 'sweep' and attributes.status = 'RUNNING'"))
    return runs[0].info.run_id if runs else None
