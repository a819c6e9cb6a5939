"""The prediction log's writer: answers go to the brain store OFF the request path.

:meth:`PredictionLog.submit` puts one item (the request's candles, the answer's last row, and
what to record about it) on a bounded queue with ``put_nowait`` and returns: it never waits on
the store, the disk or an alert channel (a full queue drops the item and counts it). The writer
takes the items, normalises and digests the request (:func:`huracan.data.prediction_store.
inputs_digest`), writes its candles as content-addressed Parquet (:func:`~huracan.data.
prediction_store.write_inputs`) and inserts one ``predictions`` row per request (its newest
answered bar; ``inputs_rows`` = the request's rows) in batches.

Where the writer runs (``mode``): by default (``"process"``) in a child process of the
multiprocessing ``spawn`` context (started with the log, i.e. at the first request under
serving, after any fork of the serving workers; it does not run the parent's ``__main__``
again), fed by a :func:`multiprocessing.Queue` whose feeder thread pickles the items (~0.1 ms
of this process's CPU per 367-bar request; the ~2.7 ms of normalising, digest and Parquet run
outside this process's GIL, at a lower CPU priority (``nice`` +10), so they hold up the model
neither for the GIL nor, on a busy machine, for a core). The writer process publishes
its counters every 20 ms (shared memory; :meth:`PredictionLog.stats`), passes on
:meth:`~PredictionLog.flush`, adds this process's drops to its own (so they are alerted) and
stops on :meth:`~PredictionLog.close` or when this process is gone (then it drains what it has,
for at most ``close_timeout_s``). ``"thread"``: one daemon thread here (the same writer); also
used when the notifier or ``execution_of`` cannot be pickled.

When the store fails, the rows wait in an in-memory backlog (at most ``max_backlog`` rows; rows
beyond it are dropped and counted) and the writer retries with capped exponential backoff
(``backoff_s`` doubling up to ``max_backoff_s``, times a seeded jitter in [0.5, 1]); once the
store answers again, the backlog is written. Alerts (a :class:`huracan.alerts.Notifier`,
:func:`huracan.alerts.notifier_from_env` by default, made where the writer runs; sent by the
writer): the store's first failure of an outage, the first drop of an outage (with the counts;
drops at a full queue included), and the recovery (with what was written and dropped). Errors
are kept with the database URL masked (:func:`huracan.db.session.safe_url`).

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
request (its writer process starts there, after any fork of the serving workers), closed at
exit (``atexit``). Under ``mlflow models serve`` that is SIGINT (Ctrl-C): uvicorn shuts down
gracefully on SIGTERM too but then re-raises SIGTERM with its default action, which skips
``atexit``; the writer process then sees its parent gone and drains what it holds (bounded,
what is left then is lost; the counts die with the parent).
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


class _ThreadLog:
    """A queue and one background writer thread to the ``predictions`` table (module
    docstring; ``mode="thread"`` of :class:`PredictionLog`, and the writer inside the
    process of ``mode="process"``, where ``source_queue`` is the queue the serving process
    fills).

    Args: those of :class:`PredictionLog` (but ``mode``), and ``source_queue``: the queue
    to read instead of its own (``mode="process"``: the :func:`multiprocessing.Queue` the
    serving process fills; :meth:`submit` is then not used).

    Raises:
        ValueError: a limit is not positive.
    """

    def __init__(self, url: str, inputs_root: str | Path, *, notifier: Any = None,
                 queue_size: int = 1_000, max_backlog: int = 20_000, batch_size: int = 500,
                 write_interval_s: float = 1.0,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, seed: int = 0,
                 execution_of: Callable[[str | None], dict[str, Any] | None] | None = None,
                 close_timeout_s: float = 5.0, register_atexit: bool = True,
                 source_queue: Any = None) -> None:
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
        self._queue: Any = queue.Queue(maxsize=int(queue_size)) if source_queue is None \
            else source_queue
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

    # --- the request side ---------------------------------------------------------------------

    def submit(self, request: pd.DataFrame, answer: pd.DataFrame,
               meta: dict[str, Any]) -> bool:
        """:meth:`PredictionLog.submit` with the writer in a thread here."""
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


class _ChildWriter(_ThreadLog):
    """The writer of ``mode="process"``, in its own process: items come from the serving
    process's queue (not through :meth:`submit`), so each item taken is counted pending here."""

    def _take(self, item: _Item) -> None:
        with self._lock:
            self._pending += 1
        super()._take(item)


#: how much lower the writer process's CPU priority is than the serving process's (nice)
_WRITER_NICE = 10
#: the counters the writer process publishes (a shared int64 array) and the parent's own
_CHILD_SLOTS = ("written", "dropped", "failed_attempts", "inputs_failed", "backlog")
_PARENT_SLOTS = ("submitted", "dropped")


def _writer_process(url: str, inputs_root: str, notifier: Any, kwargs: dict[str, Any],
                    items: Any, shared: Any, error: Any, parent: Any, flush_now: Any,
                    stop: Any, parent_pid: int) -> None:
    """The body of the writer process (``mode="process"``): a :class:`_ChildWriter` reading
    ``items``; every 20 ms: the serving process's drops are added to its count (so they are
    alerted), a :meth:`PredictionLog.flush` of the parent is passed on, and the counters are
    published to ``shared`` / ``error``. Ends on ``stop`` or when the parent is gone (drains
    for at most ``close_timeout_s``); SIGINT and SIGTERM are ignored (a signal to the process
    group reaches the parent, which then closes the log or dies)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # a Ctrl-C / SIGTERM of the process group:
        signal.signal(sig, signal.SIG_IGN)  # the parent closes us, or we see it gone
    with contextlib.suppress(OSError):
        os.nice(_WRITER_NICE)  # background work: the model's process comes first for the CPU
    writer = _ChildWriter(url, inputs_root, notifier=notifier, register_atexit=False,
                          source_queue=items, **kwargs)
    forwarded = 0  # the parent's drops already added to writer.dropped
    while True:
        gone = os.getppid() != parent_pid
        ending = gone or stop.is_set()
        if ending:
            writer.close(None if gone else 0.2)
        drops = int(parent[1])
        if drops > forwarded:
            with writer._lock:
                writer.dropped += drops - forwarded
            forwarded = drops
        if flush_now.is_set():
            writer.flush(0.0)  # retry / write now
        with writer._lock:
            values = (writer.written, writer.dropped - forwarded, writer.failed_attempts,
                      writer.inputs_failed, writer._pending)
            err = (writer.last_error or "").encode("utf-8", "replace")[:len(error) - 1]
        with shared.get_lock():
            shared[:] = values
            error.value = err
        if ending:
            items.cancel_join_thread()  # never hang at exit on a full pipe
            return
        time.sleep(0.02)


_WRITER_NAME = "huracan-prediction-log"
_spawn_lock = threading.Lock()


def _no_main_preparation() -> None:
    """Spawned writer processes do not run the parent's ``__main__`` again (a script without
    the ``if __name__ == "__main__"`` guard, e.g. a server's entry point, would otherwise be
    re-executed in the child): :func:`multiprocessing.spawn.get_preparation_data` is wrapped
    once to leave out the main module for processes named :data:`_WRITER_NAME` only."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "_huracan", False):
        return

    def preparation(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        if name == _WRITER_NAME:
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    preparation._huracan = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = preparation


class _ProcessLog:
    """``mode="process"`` of :class:`PredictionLog`: a bounded :func:`multiprocessing.Queue`
    (``spawn`` context) to a writer process (:func:`_writer_process`); counters shared."""

    def __init__(self, url: str, inputs_root: Path, *, notifier: Any, queue_size: int,
                 close_timeout_s: float, register_atexit: bool, **kwargs: Any) -> None:
        import multiprocessing as mp

        from huracan.db.session import safe_url

        self.url, self.safe_url, self.inputs_root = url, safe_url(url), inputs_root
        self.close_timeout_s = float(close_timeout_s)
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue(maxsize=int(queue_size))
        self._shared = ctx.Array("q", len(_CHILD_SLOTS))
        self._error = ctx.RawArray("c", 512)
        self._parent = ctx.RawArray("q", len(_PARENT_SLOTS))
        self._flush_now, self._stop = ctx.Event(), ctx.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._lost = 0  # pending when close gave up on the writer process
        self._final: dict[str, Any] | None = None
        kwargs = {**kwargs, "queue_size": queue_size, "close_timeout_s": close_timeout_s}
        self._proc = ctx.Process(
            target=_writer_process, name=_WRITER_NAME, daemon=True,
            args=(url, str(inputs_root), notifier, kwargs, self._queue, self._shared,
                  self._error, self._parent, self._flush_now, self._stop, os.getpid()))
        with _spawn_lock:
            _no_main_preparation()
            self._proc.start()
        if register_atexit:
            atexit.register(self.close)

    def submit(self, request: pd.DataFrame, answer: pd.DataFrame, meta: dict[str, Any]) -> bool:
        try:
            served = meta.get("served_at")
            item = _Item(request, answer.iloc[-1:], meta, pd.Timestamp.now(tz="UTC")
                         if served is None else pd.Timestamp(served))
            with self._lock:
                if self._closed:
                    self._parent[1] += 1
                    if self._final is not None:
                        self._final["dropped"] += 1
                    return False
                try:
                    self._queue.put_nowait(item)  # pickled by the queue's feeder thread
                except queue.Full:
                    self._parent[1] += 1
                    return False
                self._parent[0] += 1
            return True
        except Exception as exc:  # never into the request
            log.warning("prediction log: submit failed: %s", exc)
            return False

    def stats(self) -> dict[str, Any]:
        if self._final is not None:
            return dict(self._final)
        with self._shared.get_lock():
            written, dropped, failed, inputs_failed, _ = self._shared[:]
            err = self._error.value.decode("utf-8", "replace") or None
        submitted, parent_dropped = self._parent[0], self._parent[1]
        return {"written": written, "pending": submitted - written - dropped,
                "dropped": dropped + parent_dropped + self._lost, "failed_attempts": failed,
                "inputs_failed": inputs_failed, "last_error": err}

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        self._flush_now.set()
        try:
            while self.stats()["pending"] > 0:
                if time.monotonic() >= deadline or not self._proc.is_alive():
                    return False
                time.sleep(0.01)
            return True
        finally:
            self._flush_now.clear()

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        with self._lock:
            already, self._closed = self._closed, True
        if already:
            return self.stats()
        self.flush(self.close_timeout_s if timeout is None else timeout)
        self._stop.set()
        self._proc.join(timeout=5.0)
        if self._proc.is_alive():
            log.error("prediction log writer process did not stop: terminated")
            self._proc.terminate()
            self._proc.join(timeout=1.0)
        st = self.stats()
        if st["pending"]:
            log.error("prediction log closed with %d row(s) unwritten (store %s): counted as "
                      "dropped", st["pending"], self.safe_url)
            self._lost = st["pending"]
            st = self.stats()
        self._final = {**st, "pending": 0}
        self._queue.close()
        self._queue.cancel_join_thread()  # items left are counted: never block exit on them
        log.log(logging.WARNING if st["dropped"] or st["failed_attempts"] else logging.INFO,
                "prediction log closed: %s", json.dumps(self._final))
        return dict(self._final)


class PredictionLog:
    """The prediction log (module docstring): :meth:`submit` queues, a writer off the request
    path inserts into the ``predictions`` table.

    Args:
        url: the brain store's SQLAlchemy URL (SQLite files are opened per batch, so a file
            that disappears is seen as an outage; Postgres pools with ``pool_pre_ping``).
        inputs_root: the Parquet root of the requests' candles.
        mode: ``"process"`` (the default: the writer runs in a child process of the
            ``spawn`` context, outside this process's GIL) or ``"thread"`` (a daemon thread
            here). A ``notifier`` (or ``execution_of``) that cannot be pickled falls back to
            ``"thread"`` (logged).
        notifier: alert channel (default :func:`huracan.alerts.notifier_from_env`, made where
            the writer runs).
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
        close_timeout_s: how long :meth:`close` drains.
        register_atexit: close (drain, bounded) at interpreter exit.

    Raises:
        ValueError: a limit is not positive, or an unknown ``mode``.
    """

    def __init__(self, url: str, inputs_root: str | Path, *, mode: str = "process",
                 notifier: Any = None, queue_size: int = 1_000, max_backlog: int = 20_000,
                 batch_size: int = 500, write_interval_s: float = 1.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, seed: int = 0,
                 execution_of: Callable[[str | None], dict[str, Any] | None] | None = None,
                 close_timeout_s: float = 5.0, register_atexit: bool = True) -> None:
        if mode not in ("process", "thread"):
            raise ValueError(f"prediction log: mode must be 'process' or 'thread', got {mode!r}")
        if min(queue_size, max_backlog, batch_size) < 1 or not backoff_s > 0:
            raise ValueError("prediction log: queue_size, max_backlog, batch_size and backoff_s "
                             "must be positive")
        if mode == "process":
            import pickle

            try:
                pickle.dumps((notifier, execution_of))
            except Exception as exc:
                log.warning("prediction log: notifier/execution_of cannot go to a writer "
                            "process (%s): writer thread instead", type(exc).__name__)
                mode = "thread"
        self.mode = mode
        kwargs: dict[str, Any] = {"max_backlog": max_backlog, "batch_size": batch_size,
                  "write_interval_s": write_interval_s, "backoff_s": backoff_s,
                  "max_backoff_s": max_backoff_s, "seed": seed, "execution_of": execution_of}
        self._impl: _ThreadLog | _ProcessLog
        if mode == "thread":
            self._impl = _ThreadLog(url, inputs_root, notifier=notifier, queue_size=queue_size,
                                    close_timeout_s=close_timeout_s,
                                    register_atexit=register_atexit, **kwargs)
        else:
            self._impl = _ProcessLog(url, Path(inputs_root), notifier=notifier,
                                     queue_size=queue_size, close_timeout_s=close_timeout_s,
                                     register_atexit=register_atexit, **kwargs)
        self.url, self.safe_url = self._impl.url, self._impl.safe_url
        self.inputs_root = Path(inputs_root)

    @classmethod
    def from_env(cls, **kwargs: Any) -> PredictionLog | None:
        """The log :data:`LOG_ENV` asks for (module docstring), or None when it is off."""
        from huracan.data.prediction_store import default_inputs_root

        url = log_url_from_env()
        if url is None:
            return None
        return cls(url, default_inputs_root(), **kwargs)

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
        return self._impl.submit(request, answer, meta)

    def stats(self) -> dict[str, Any]:
        """``written, pending, dropped, failed_attempts, inputs_failed, last_error`` (URL
        masked); with ``mode="process"`` as the writer process published them (every 20 ms)."""
        return self._impl.stats()

    @property
    def pending(self) -> int:
        """Items queued or backlogged, not yet written nor dropped."""
        return int(self.stats()["pending"])

    @property
    def written(self) -> int:
        """Rows inserted."""
        return int(self.stats()["written"])

    @property
    def dropped(self) -> int:
        """Items dropped (queue full, backlog full, malformed, or left at :meth:`close`)."""
        return int(self.stats()["dropped"])

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` seconds passed (False); a store
        in backoff is retried at once."""
        return self._impl.flush(timeout)

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop taking items, drain for at most ``timeout`` seconds (default
        ``close_timeout_s``), stop the writer; what is still pending then is counted as
        dropped (and logged). Returns :meth:`stats`. Idempotent."""
        return self._impl.close(timeout)


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
