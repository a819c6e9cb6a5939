"""The prediction log's writer: answers go to the brain store OFF the request path.

:meth:`PredictionLog.submit` puts one item (the request's candles, the answer, and what to
record about it) on a bounded :class:`queue.Queue` with ``put_nowait`` and returns: it never
waits on the store, the disk or an alert channel (a full queue drops the item and counts it).
One daemon thread takes the items, digests the request (:func:`huracan.data.prediction_store.
inputs_digest`), writes its candles as content-addressed Parquet (:func:`~huracan.data.
prediction_store.write_inputs`) and inserts one ``predictions`` row per request (its newest
answered bar; ``inputs_rows`` = the request's rows) in batches.

When the store fails, the rows wait in an in-memory backlog (at most ``max_backlog`` rows; rows
beyond it are dropped and counted) and the writer retries with capped exponential backoff
(``backoff_s`` doubling up to ``max_backoff_s``, times a seeded jitter in [0.5, 1]); once the
store answers again, the backlog is written. Alerts (a :class:`huracan.alerts.Notifier`,
:func:`huracan.alerts.notifier_from_env` by default; sent from the writer thread): the store's
first failure of an outage, the first drop of an outage (with the counts), and the recovery (with
what was written and dropped). Errors are kept with the database URL masked
(:func:`huracan.db.session.safe_url`).

Counters (:meth:`PredictionLog.stats`): ``written`` rows inserted, ``pending`` items queued or
backlogged, ``dropped`` (queue full, backlog full, or left when :meth:`close` gave up),
``failed_attempts`` store writes that failed, ``last_error``.

Settings: one environment variable, :data:`LOG_ENV` = ``HURACAN_PREDICTION_LOG``: unset, ``off``
or ``0`` = no log (the default: a bare ``mlflow models serve`` records nothing); ``on`` or ``1``
= the brain store the rest of Huracan uses (:func:`huracan.db.session.resolve_url`:
``HURACAN_DB_URL``, else ``sqlite:///huracan.db``); anything else = a database URL. The inputs'
Parquet root is ``HURACAN_PREDICTION_INPUTS`` (default ``$HURACAN_LAKE/predictions``, i.e.
``data/lake/predictions``; :func:`huracan.data.prediction_store.default_inputs_root`). Limits
(constructor arguments): queue 1,000 requests (each holds its candles: ~20 KB for 367 bars),
backlog 20,000 rows (~2.5 KB each), one insert per second (or per 500 rows), backoff 0.5 s
doubling to 30 s, :meth:`close` drains for at most 5 s.

The served model (:meth:`huracan.serving.pyfunc.ForecasterPyfunc.predict`, raw candles) submits
through :func:`process_log`: one log per process, made from the environment at the first
request (its writer thread starts there, after any fork of the serving workers), closed at exit
(``atexit``). Under ``mlflow models serve`` that is SIGINT (Ctrl-C): uvicorn shuts down
gracefully on SIGTERM too but then re-raises SIGTERM with its default action, which skips
``atexit``; the writer normally trails the requests by milliseconds, but rows still in memory
(a store outage) are then lost uncounted.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

#: the one switch: off (unset/off/0), on (1/on: the brain store's URL) or a database URL
LOG_ENV = "HURACAN_PREDICTION_LOG"
_OFF = ("", "off", "0", "false", "no")
_ON = ("on", "1", "true", "yes")


def log_url_from_env(environ: Any = None) -> str | None:
    """The database URL the log writes to, from :data:`LOG_ENV`; None when the log is off.

    Raises:
        nothing; an unknown word is taken as a URL (and fails when the writer connects).
    """
    from huracan.db.session import resolve_url

    value = (os.environ if environ is None else environ).get(LOG_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value.lower() in _ON:
        return resolve_url()
    return value


@dataclass
class _Item:
    request: pd.DataFrame
    answer: pd.DataFrame
    meta: dict[str, Any]
    served_at: pd.Timestamp


def run_execution(run_id: str | None) -> dict[str, Any] | None:
    """The ``backtest`` settings of training run ``run_id`` as a dict (the execution settings
    the model was judged with), from the run's ``config/resolved.yaml`` in the registry of
    ``MLFLOW_TRACKING_URI``; None when there is no run id or it cannot be read (logged)."""
    if not run_id:
        return None
    try:
        from dataclasses import asdict

        from mlflow.tracking import MlflowClient

        from huracan.rebuild import run_settings

        return dict(asdict(run_settings(MlflowClient(), run_id).backtest))
    except Exception as exc:  # the row is written without them
        log.warning("execution settings of run %s not read: %s", run_id, exc)
        return None


class PredictionLog:
    """A queue and one background writer to the ``predictions`` table (module docstring).

    Args:
        url: the brain store's SQLAlchemy URL (SQLite files are opened per batch, so a file
            that disappears is seen as an outage; Postgres pools with ``pool_pre_ping``).
        inputs_root: the Parquet root of the requests' candles.
        notifier: alert channel (default :func:`huracan.alerts.notifier_from_env`).
        queue_size: items the queue holds (a full queue drops and counts).
        max_backlog: rows kept in memory while the store fails (beyond: dropped, counted).
        batch_size: rows per insert.
        write_interval_s: rows are inserted at most this long after they were made (one
            transaction per interval, or sooner when ``batch_size`` rows wait or on
            :meth:`flush`), so the store costs one round trip per second, not per request.
        backoff_s, max_backoff_s: first retry delay and its cap, seconds.
        seed: of the retry jitter.
        execution_of: ``run_id -> execution dict | None`` for rows whose meta has no
            ``execution`` (cached per run; default :func:`run_execution`).
        register_atexit: close (drain, bounded) at interpreter exit.

    Raises:
        ValueError: a limit is not positive.
    """

    def __init__(self, url: str, inputs_root: str | Path, *, notifier: Any = None,
                 queue_size: int = 1_000, max_backlog: int = 20_000, batch_size: int = 500,
                 write_interval_s: float = 1.0,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, seed: int = 0,
                 execution_of: Callable[[str | None], dict[str, Any] | None] | None = None,
                 close_timeout_s: float = 5.0, register_atexit: bool = True) -> None:
        if min(queue_size, max_backlog, batch_size) < 1 or not backoff_s > 0:
            raise ValueError("prediction log: queue_size, max_backlog, batch_size and backoff_s "
                             "must be positive")
        from huracan.db.session import safe_url

        self.url, self.safe_url = url, safe_url(url)
        self.inputs_root = Path(inputs_root)
        self._notifier = notifier
        self.max_backlog, self.batch_size = int(max_backlog), int(batch_size)
        self.write_interval_s = float(write_interval_s)
        self._write_at = 0.0  # the backlog's next write (interval since its oldest row)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.close_timeout_s = float(close_timeout_s)
        self._rng = random.Random(seed)
        self._execution_of = execution_of or run_execution
        self._executions: dict[str | None, dict[str, Any] | None] = {}
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=int(queue_size))
        self._backlog: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.written = self.dropped = self.failed_attempts = self.inputs_failed = 0
        self._pending = 0
        self.last_error: str | None = None
        self._engine: Any = None
        self._outage = False  # the store failed and has not answered since
        self._outage_dropped_at = 0  # dropped count at the last successful write
        self._drop_alerted = 0  # dropped count last alerted
        self._drops_alerted = False  # drops were alerted in this episode
        self._retry_at = 0.0
        self._delay = self.backoff_s
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="huracan-prediction-log",
                                        daemon=True)
        self._thread.start()
        if register_atexit:
            atexit.register(self.close)

    @classmethod
    def from_env(cls, **kwargs: Any) -> PredictionLog | None:
        """The log :data:`LOG_ENV` asks for (module docstring), or None when it is off."""
        from huracan.data.prediction_store import default_inputs_root

        url = log_url_from_env()
        if url is None:
            return None
        return cls(url, default_inputs_root(), **kwargs)

    # --- the request side ---------------------------------------------------------------------

    def submit(self, request: pd.DataFrame, answer: pd.DataFrame,
               meta: dict[str, Any]) -> bool:
        """Queue one answered request; returns at once (True queued, False dropped: the queue
        is full or the log closed). Never raises.

        Args:
            request: the request's candles (``timestamp`` + OHLCV + extra columns); not to be
                changed by the caller afterwards (the writer reads it later).
            answer: the answer (:data:`huracan.serving.raw.OUTPUT_COLUMNS` rows); its LAST row
                is logged.
            meta: ``source``, ``symbol``, ``timeframe`` (required), and optionally
                ``latency_ms``, ``execution``, ``account``, ``served_at`` (default: now, UTC),
                ``registered_model`` / ``model_version`` / ``run_id`` (override the answer's).
        """
        try:
            served = meta.get("served_at")
            item = _Item(request, answer, meta, pd.Timestamp.now(tz="UTC")
                         if served is None else pd.Timestamp(served))
            with self._lock:
                if self._closed:
                    self.dropped += 1
                    return False
                self._pending += 1
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            with self._lock:
                self._pending -= 1
                self.dropped += 1
            return False
        except Exception as exc:  # never into the request
            log.warning("prediction log: submit failed: %s", exc)
            return False

    @property
    def pending(self) -> int:
        """Items queued or backlogged, not yet written nor dropped."""
        return self._pending

    def stats(self) -> dict[str, Any]:
        """``written, pending, dropped, failed_attempts, inputs_failed, last_error`` (URL
        masked)."""
        with self._lock:
            return {"written": self.written, "pending": self._pending, "dropped": self.dropped,
                    "failed_attempts": self.failed_attempts,
                    "inputs_failed": self.inputs_failed, "last_error": self.last_error}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` seconds passed (False); a store
        in backoff is retried at once."""
        deadline = time.monotonic() + timeout
        with self._idle:
            self._retry_at = self._write_at = 0.0
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
                self._write_at = 0.0
        return True

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop taking items, drain for at most ``timeout`` seconds (default
        ``close_timeout_s``), stop the writer; what is still pending then is counted as
        dropped (and logged). Returns :meth:`stats`. Idempotent."""
        with self._lock:
            already, self._closed = self._closed, True
        if not already:
            self.flush(self.close_timeout_s if timeout is None else timeout)
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=1.0)
            with self._lock:
                if self._pending:
                    log.error("prediction log closed with %d row(s) unwritten (store %s): "
                              "counted as dropped", self._pending, self.safe_url)
                    self.dropped += self._pending
                    self._pending = 0
                    self._backlog.clear()
            if self._engine is not None:
                self._engine.dispose()
            st = self.stats()
            log.log(logging.WARNING if st["dropped"] or st["failed_attempts"] else logging.INFO,
                    "prediction log closed: %s", json.dumps(st))
        return self.stats()

    # --- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            wait = 0.5 if not self._backlog else \
                max(self._retry_at, self._write_at) - time.monotonic()
            items: list[_Item] = []
            try:
                first = self._queue.get(timeout=max(wait, 0.001))
                if first is None:
                    return
                items.append(first)
                while len(items) < self.batch_size:
                    nxt = self._queue.get_nowait()
                    if nxt is None:
                        self._queue.put_nowait(None)  # seen again after this round
                        break
                    items.append(nxt)
            except queue.Empty:
                pass
            except Exception as exc:  # a bug here must not kill the writer
                log.error("prediction log writer: %s", exc)
            for item in items:
                self._take(item)
            now = time.monotonic()
            if self._backlog and now >= self._retry_at and (
                    now >= self._write_at or len(self._backlog) >= self.batch_size):
                self._write_backlog()
            self._maybe_alert_drops()

    def _take(self, item: _Item) -> None:
        """Make the row of one item and add it to the backlog (or drop it when full)."""
        try:
            row = self._row(item)
        except Exception as exc:  # a malformed answer: nothing to write
            log.warning("prediction log: request not logged: %s", exc)
            with self._idle:
                self._pending -= 1
                self.dropped += 1
                self._idle.notify_all()
            return
        with self._idle:
            if len(self._backlog) >= self.max_backlog:
                self._pending -= 1
                self.dropped += 1
                self._idle.notify_all()
            else:
                if not self._backlog:
                    self._write_at = time.monotonic() + self.write_interval_s
                self._backlog.append(row)

    def _row(self, item: _Item) -> dict[str, Any]:
        from huracan.data.prediction_store import (
            inputs_digest,
            normalise_candles,
            prediction_row,
            write_inputs,
        )

        meta = item.meta
        request = normalise_candles(item.request)
        digest = inputs_digest(request)
        path: Path | None = None
        try:
            path = write_inputs(self.inputs_root, digest, request, symbol=meta["symbol"],
                                timeframe=meta["timeframe"], normalised=True)
        except OSError as exc:  # the row still goes in, without its file
            self.inputs_failed += 1
            log.warning("prediction log: inputs not stored under %s: %s", self.inputs_root, exc)
        last = item.answer.iloc[-1].to_dict()
        for key in ("registered_model", "model_version", "run_id"):
            if meta.get(key) is not None:
                last[key] = meta[key]
        execution = meta.get("execution")
        if execution is None and "execution" not in meta:
            run_id = last.get("run_id")
            if run_id not in self._executions:
                self._executions[run_id] = self._execution_of(run_id)
            execution = self._executions[run_id]
        return prediction_row(last, source=meta["source"], symbol=meta["symbol"],
                              timeframe=meta["timeframe"], execution=execution,
                              inputs_digest=digest, inputs_rows=len(request),
                              inputs_path=None if path is None else str(path.resolve()),
                              served_at=item.served_at, latency_ms=meta.get("latency_ms"),
                              account=meta.get("account"))

    def _store(self) -> Any:
        if self._engine is None:
            from sqlalchemy.pool import NullPool

            from huracan.db.session import make_engine

            sqlite = self.url.startswith("sqlite")
            self._engine = make_engine(self.url, **({"poolclass": NullPool} if sqlite else {}))
        return self._engine

    def _write_backlog(self) -> None:
        """Insert the backlog in batches; on failure schedule the next try (backoff)."""
        from huracan.data.prediction_store import insert_predictions

        while self._backlog:
            batch = self._backlog[:self.batch_size]
            try:
                insert_predictions(self._store(), batch)
            except Exception as exc:
                self._failed(exc)
                return
            with self._idle:
                del self._backlog[:len(batch)]
                self.written += len(batch)
                self._pending -= len(batch)
                self._idle.notify_all()
            self._delay = self.backoff_s
            if self._outage:
                self._recovered()
            elif self.dropped == self._drop_alerted:
                self._drops_alerted = False
            self._outage_dropped_at = self.dropped  # drops count from the last good write

    def _failed(self, exc: BaseException) -> None:
        from huracan.secrets import mask_text

        first = not self._outage
        with self._lock:
            self.failed_attempts += 1
            self.last_error = mask_text(f"{type(exc).__name__}: {exc}".splitlines()[0]
                                        ).replace(self.url, self.safe_url)[:500]
        delay = min(self._delay, self.max_backoff_s) * (0.5 + 0.5 * self._rng.random())
        self._retry_at = time.monotonic() + delay
        self._delay = min(self._delay * 2, self.max_backoff_s)
        if first:
            self._outage = True
            log.error("prediction log: store %s failed: %s", self.safe_url, self.last_error)
            self._alert("prediction log: brain store unreachable, rows kept in memory",
                        "critical", store=self.safe_url, error=self.last_error,
                        pending=self._pending, max_backlog=self.max_backlog)

    def _recovered(self) -> None:
        self._outage, self._drops_alerted, self._drop_alerted = False, False, self.dropped
        dropped = self.dropped - self._outage_dropped_at
        log.warning("prediction log: store %s is back", self.safe_url)
        self._alert("prediction log: brain store back, backlog written", "info",
                    store=self.safe_url, written=self.written, dropped_in_outage=dropped,
                    failed_attempts=self.failed_attempts)

    def _maybe_alert_drops(self) -> None:
        """One alert per outage (or per run of drops while the store answers) when rows were
        dropped, with the counts; re-armed by the recovery or by a write after the drops."""
        if self.dropped > self._drop_alerted and not self._drops_alerted:
            self._alert("prediction log: rows dropped", "critical", store=self.safe_url,
                        dropped=self.dropped, pending=self._pending, written=self.written,
                        max_backlog=self.max_backlog, store_down=self._outage)
            self._drop_alerted, self._drops_alerted = self.dropped, True

    def _alert(self, title: str, severity: str, **details: Any) -> None:
        from huracan.alerts import Alert, notifier_from_env

        try:
            if self._notifier is None:
                self._notifier = notifier_from_env()
            self._notifier.notify(Alert(title, severity, details))
        except Exception as exc:  # an alert channel must not stop the writer
            log.error("prediction log: alert not sent: %s", exc)


def log_now(answer_row: dict[str, Any], *, source: str, symbol: str, timeframe: str,
            candles: pd.DataFrame | None = None, digest: str | None = None,
            inputs_rows: int | None = None, execution: dict[str, Any] | None = None,
            latency_ms: float | None = None) -> int | None:
    """Log one answer synchronously (``huracan size`` / ``huracan select``: one answer per
    command, no queue needed) when :data:`LOG_ENV` turns the log on; its row id, or None when
    off or when it could not be written (one warning line, URL masked; never raises).

    Args:
        answer_row: :data:`huracan.serving.raw.OUTPUT_COLUMNS` keys (missing ones are NULL).
        candles: the candles the answer was computed from (stored as the inputs Parquet under
            :func:`huracan.data.prediction_store.default_inputs_root`); or None with ``digest``
            and ``inputs_rows`` (inputs that are not OHLCV candles; no file).
    """
    from huracan.data.prediction_store import (
        default_inputs_root,
        inputs_digest,
        insert_predictions,
        normalise_candles,
        prediction_row,
        write_inputs,
    )
    from huracan.db.session import make_engine, safe_url

    url = log_url_from_env()
    if url is None:
        return None
    try:
        path = None
        if candles is not None:
            frame = normalise_candles(candles)
            digest, inputs_rows = inputs_digest(frame), len(frame)
            path = write_inputs(default_inputs_root(), digest, frame, symbol=symbol,
                                timeframe=timeframe).resolve()
        row = prediction_row(answer_row, source=source, symbol=symbol, timeframe=timeframe,
                             execution=execution, inputs_digest=digest or "",
                             inputs_rows=int(inputs_rows or 0), inputs_path=path,
                             served_at=pd.Timestamp.now(tz="UTC"), latency_ms=latency_ms)
        engine = make_engine(url)
        try:
            return insert_predictions(engine, [row])[0]
        finally:
            engine.dispose()
    except Exception as exc:  # the command's answer stands without its log row
        from huracan.secrets import mask_text

        log.warning("prediction log: %s answer not logged to %s: %s", source, safe_url(url),
                    mask_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        return None


# --- one log per process (the served model's) ----------------------------------------------------

_process: tuple[int, PredictionLog | None] | None = None
_process_lock = threading.Lock()


def process_log() -> PredictionLog | None:
    """This process's log, made once from the environment (:meth:`PredictionLog.from_env`;
    again in a forked child); None when off or when it cannot be made (logged once)."""
    global _process
    current = _process
    pid = os.getpid()
    if current is not None and current[0] == pid:
        return current[1]
    with _process_lock:
        if _process is None or _process[0] != pid:
            made: PredictionLog | None = None
            try:
                made = PredictionLog.from_env()
            except Exception as exc:
                log.error("prediction log not started: %s", exc)
            if made is not None:
                log.info("prediction log on: store %s, inputs %s", made.safe_url,
                         made.inputs_root)
            _process = (pid, made)
        return _process[1]


def reset_process_log() -> None:
    """Close and forget this process's log (the next :func:`process_log` reads the
    environment again; tests)."""
    global _process
    with _process_lock:
        current, _process = _process, None
    if current is not None and current[1] is not None:
        current[1].close(timeout=1.0)


def serving_source() -> str:
    """``serve`` inside ``mlflow models serve`` (its scoring server sets
    ``_MLFLOW_IS_IN_SERVING_ENVIRONMENT``), else ``in_process``."""
    flag = os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "").lower()
    return "serve" if flag in ("true", "1") else "in_process"


__all__ = ["LOG_ENV", "PredictionLog", "log_now", "log_url_from_env", "process_log",
           "reset_process_log", "run_execution", "serving_source"]
