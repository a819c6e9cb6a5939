"""Hydra callback printing the comparison table of a run or multirun sweep."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

RESULT_FILE = "result.json"
log = logging.getLogger(__name__)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table: model, val/test Sharpe, val/test composite, test trades, fit seconds."""
    header = (f"{'job':>3}  {'model':<12}{'status':<9}{'val_sharpe':>11}{'test_sharpe':>12}"
              f"{'val_composite':>14}{'test_composite':>15}{'test_trades':>12}{'fit_s':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        m, t = r.get("metrics", {}), r.get("timings", {})
        if r["status"] != "ok":
            lines.append(f"{r['job']:>3}  {r['model']:<12}{'FAILED':<9}{r.get('error', '')}")
            continue
        lines.append(
            f"{r['job']:>3}  {r['model']:<12}{'ok':<9}{m['val_sharpe']:>11.2f}"
            f"{m['test_sharpe']:>12.2f}{m['val_composite_score']:>14.3f}"
            f"{m['test_composite_score']:>15.3f}{int(m['test_n_trades']):>12d}"
            f"{t.get('fit', float('nan')):>8.1f}")
    return "\n".join(lines)


def read_result(config: DictConfig, job_return: JobReturn) -> dict[str, Any] | None:
    """The ``result.json`` a completed job wrote in its output dir (``None`` for a failed job)."""
    if job_return.status != JobStatus.COMPLETED:
        return None
    path = Path(config.hydra.runtime.output_dir) / RESULT_FILE
    result: dict[str, Any] = json.loads(path.read_text())
    return result


class SummaryTable(Callback):
    """Collects each job's ``result.json`` and prints the table when the run/sweep ends."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        job = int(config.hydra.job.get("num", 0) or 0)
        model = str(config.model._target_).rsplit(".", 1)[-1].removesuffix("Forecaster").lower()
        result = read_result(config, job_return)
        if result is not None:
            self.rows.append({"job": job, "model": result["model_type"], "status": "ok",
                              **result})
        else:
            err = job_return._return_value
            self.rows.append({"job": job, "model": model, "status": "failed",
                              "error": f"{type(err).__name__}: {err}"[:120]})

    def _print(self) -> None:
        if self.rows:
            print("\n" + format_table(sorted(self.rows, key=lambda r: r["job"])), flush=True)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._print()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._print()
