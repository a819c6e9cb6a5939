"""The ``pipeline_runs`` ledger: which step of which symbol of which night is running, done,
skipped or failed (migration 0006, :class:`huracan.db.tables.PipelineRun`).

A step is *claimed* before it runs (status ``running``, ``attempts`` + 1, this host and pid) and
*finished* after its outputs are in place (``done``/``skipped``/``failed``, ``ended_at``, the MLflow
run ids, a one-line detail). A rerun of the same night skips ``done`` and ``skipped`` steps; a
``failed`` step, or a ``running`` one whose process is gone (killed), is claimed again. Every write
is one short transaction, so a killed process leaves at most a ``running`` row behind, never a
half-written one.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

from huracan.db.tables import PipelineRun

#: statuses a rerun does not repeat
FINISHED = ("done", "skipped")
#: the pseudo-symbol of night-wide steps (the summary)
NIGHT = "*"


class StepBusyError(RuntimeError):
    """The step is ``running`` in another live process on this host."""


@dataclass
class StepRecord:
    """One ``pipeline_runs`` row as plain values."""

    run_id: str
    symbol: str
    step: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    attempts: int
    host: str
    pid: int
    mlflow_run_ids: list[str] = field(default_factory=list)
    detail: str | None = None

    @property
    def seconds(self) -> float | None:
        """Wall seconds of the last attempt (``None`` while running)."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


def _now() -> datetime:
    return datetime.now(UTC)


def _record(row: PipelineRun) -> StepRecord:
    return StepRecord(row.run_id, row.symbol, row.step, row.status, row.started_at, row.ended_at,
                      row.attempts, row.host, row.pid, list(row.mlflow_run_ids or []), row.detail)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PipelineRunStore:
    """Claims and finishes steps in ``pipeline_runs`` of the brain store ``engine`` (schema at
    head). Safe to share between processes: every call is its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.host = socket.gethostname()

    def get(self, run_id: str, symbol: str, step: str) -> StepRecord | None:
        """The row of one step, or ``None`` if it never started."""
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            row = session.get(PipelineRun, (run_id, symbol, step))
            return _record(row) if row is not None else None

    def steps(self, run_id: str) -> list[StepRecord]:
        """Every row of one night, by start time."""
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            rows = session.scalars(select(PipelineRun).where(PipelineRun.run_id == run_id)
                                   .order_by(PipelineRun.started_at)).all()
            return [_record(r) for r in rows]

    def last_finished(self, symbol: str, step: str, status: str = "done") -> StepRecord | None:
        """The most recent ``status`` row of ``symbol``'s ``step`` over every night (the
        weekly sizer retrain asks when it last ran)."""
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            row = session.scalars(select(PipelineRun).where(
                PipelineRun.symbol == symbol, PipelineRun.step == step,
                PipelineRun.status == status).order_by(PipelineRun.ended_at.desc()).limit(1)
            ).first()
            return _record(row) if row is not None else None

    def claim(self, run_id: str, symbol: str, step: str, *, reopen: bool = False
              ) -> StepRecord | None:
        """Mark the step ``running`` for this process; ``None`` when it is finished already
        (``reopen``: claim a finished step again, e.g. the summary after new work).

        Raises:
            StepBusyError: another live process on this host runs it now.
        """
        from sqlalchemy.orm import Session

        pid = os.getpid()
        with Session(self.engine) as session, session.begin():
            row = session.get(PipelineRun, (run_id, symbol, step), with_for_update=True)
            if row is not None and row.status in FINISHED and not reopen:
                return None
            if row is not None and row.status == "running" and row.host == self.host \
                    and row.pid != pid and _alive(row.pid):
                raise StepBusyError(f"step {step} of {symbol} in {run_id} is running in pid "
                                    f"{row.pid} on {row.host}")
            if row is None:
                row = PipelineRun(run_id=run_id, symbol=symbol, step=step, status="running",
                                  started_at=_now(), ended_at=None, attempts=1, host=self.host,
                                  pid=pid, mlflow_run_ids=[], detail=None)
                session.add(row)
            else:
                row.status, row.started_at, row.ended_at = "running", _now(), None
                row.attempts, row.host, row.pid = row.attempts + 1, self.host, pid
                row.detail = (f"resumed after {row.detail}" if row.detail
                              else "resumed (previous attempt interrupted)")[:2000]
            session.flush()
            return _record(row)

    def finish(self, run_id: str, symbol: str, step: str, status: str, *,
               detail: str | None = None, mlflow_run_ids: list[str] | None = None) -> None:
        """Record the outcome of a claimed step (``done``, ``skipped`` or ``failed``)."""
        if status not in ("done", "skipped", "failed"):
            raise ValueError(f"finish status must be done, skipped or failed, got {status!r}")
        values: dict[str, Any] = {"status": status, "ended_at": _now(),
                                  "detail": (detail or "")[:2000] or None}
        if mlflow_run_ids is not None:
            values["mlflow_run_ids"] = list(mlflow_run_ids)
        with self.engine.begin() as conn:
            conn.execute(update(PipelineRun).where(
                PipelineRun.run_id == run_id, PipelineRun.symbol == symbol,
                PipelineRun.step == step).values(**values))
