"""The live paper loop (``huracan paper run``): wait for each bar to close, download it through
the same path as ``huracan download`` (:func:`huracan.data.sources.download_ohlcv`: ccxt with
retry and exchange fallback, Great Expectations validation, the data-quality log, the Parquet
lake), ask production, and write the bar's step (:func:`huracan.paper.loop.step`: fill, mark,
decide, in one transaction).

Timing (bar ``k`` opens at ``t_k`` and closes at ``t_k + timeframe``):

1. The loop sleeps until bar ``k`` has closed plus ``settle_s`` seconds (exchanges publish a
   closed candle a moment after the close), then writes a heartbeat
   (:meth:`~huracan.paper.ledger.PaperLedger.heartbeat`; at every wake).
2. It downloads what the lake lacks from ``request_start = anchor - warmup_bars`` up to the bar
   still forming (never stored), and reads the request window ``[request_start, t_k]`` from the
   lake partition of the exchange that served (or found the lake up to date).
   Each bar appends one small part file to the lake partition; past 48 parts the loop compacts
   the partition (:meth:`~huracan.data.lake.CandleLake.compact`, crash-safe) so reads stay fast.
3. It asks production for the window (one request, the growing window of the spec) and calls
   ``step`` for bar ``k``.

No decision on stale data. Bar ``k`` is decided only while it is FRESH: its step is written at
most ``stale_after`` after its close (default half a bar). Until then a transient failure is
retried with a capped exponential backoff (``backoff_s`` doubling up to ``backoff_max_s``, and
never past the freshness deadline), after the Downloader's own per-request retry policy
(:class:`huracan.data.sources.RetryPolicy`). The transient failures are: an exchange outage
(every exchange failed: the batch is degraded), a stale bar (the newest stored bar is older
than ``t_k``: the exchange has not published it, or has a gap there), production unreachable
(:class:`huracan.paper.http.ProductionUnavailableError`, a registry or connection error). Not
retried: a batch whose rows broke a critical data rule (``download rejected: ...``) and a request
production refuses (:class:`~huracan.paper.http.ProductionRejectedError`, ``InputRuleError``).
When the deadline passes (or at once for those two) the bar gets NO decision: a ``skipped``
order whose reason is the failure's one line (``exchange outage: every exchange failed
(binance: ...; bybit: ...; okx: ...)``, ``stale bar: ...``, ``production unreachable: ...``),
the position held. If the bar's candle is stored (production failed) that order is written at
once; if it is not (outage, stale or missing bar) the reason is kept and the order is written
by the first later step that has data (the catch-up below), so the previous decision's fill at
this bar's open and its mark are not lost; a bar the exchange never publishes is recorded
skipped by the core (no fill across a gap). The loop then waits for the next close.

Lateness rule (restarts, catch-up). The account's state is in the store; on every wake the
bars between the last bar holding an order and the newest closed bar are the PENDING ones. Each
pending bar that is not the newest closed bar closed while the loop was down: it gets a
``skipped`` order with reason ``late: ...`` through the same ``step`` (so its predecessor's fill
and mark are written from the stored candles); only the newest closed bar can be decided, and
only while fresh. Bars without a candle (exchange gaps) get no row: the core never fills across
a gap. A bar already holding an order is never stepped again (the ledger's primary keys make a
rerun write nothing), so a kill -9 at any point followed by a restart gives no double order,
fill or mark, and a bar whose step was rolled back by the kill is stepped again: decided if
still fresh, else skipped as late.

Time is injectable: ``now()`` (UTC ``pd.Timestamp``) and ``sleep(seconds)``; tests run a
simulated clock over real candles (the Downloader should share the clock: its ``now`` bounds
what is downloadable). SIGTERM/SIGINT set a stop flag (handlers installed when called from the
main thread): the loop finishes the step in progress and returns between bars. One log line per
bar (logger ``huracan.paper.live``, INFO).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from huracan.data.lake import CandleLake
from huracan.data.ohlcv import timeframe_to_timedelta
from huracan.data.sources import Downloader, DownloadResult, Market, download_ohlcv, market_symbol
from huracan.paper.http import ProductionRejectedError, ProductionUnavailableError
from huracan.paper.ledger import AccountSpec, PaperLedger

log = logging.getLogger(__name__)

Clock = Callable[[], pd.Timestamp]
Sleep = Callable[[float], None]


@dataclass
class LiveResult:
    """What one :func:`run` did.

    Attributes:
        account: the paper account.
        wakes: times the loop woke to work on a bar (each wrote a heartbeat).
        bars: bar steps written by this run (orders: decided + skipped).
        decided, skipped: of those.
        outages: downloads in which every exchange failed.
        production_errors: requests production could not answer.
        retries: loop-level backoff waits taken.
        stopped: why it returned: ``max_bars``, ``signal`` or ``stop``.
        lines: the one-line log of each bar step.
    """

    account: str
    wakes: int = 0
    bars: int = 0
    decided: int = 0
    skipped: int = 0
    outages: int = 0
    production_errors: int = 0
    retries: int = 0
    stopped: str = ""
    lines: list[str] = field(default_factory=list)


class Retry(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A transient failure for the bar at hand: retry after a backoff while it is fresh."""


class SkipBar(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The bar gets a skipped order with this one-line reason, now."""


def _one_line(exc: BaseException | str, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


def _ts(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def wall_clock() -> pd.Timestamp:
    """The wall clock, UTC."""
    return pd.Timestamp.now(tz="UTC")


def interruptible_sleep(stop: threading.Event) -> Sleep:
    """``sleep(seconds)`` that returns early when ``stop`` is set (a signal)."""

    def sleep(seconds: float) -> None:
        stop.wait(max(0.0, float(seconds)))

    return sleep


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        log.info("paper loop: %s received; stopping after the current bar",
                 signal.Signals(signum).name)
        stop.set()

    before = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def describe_download(result: DownloadResult) -> str:
    """One line: which exchanges failed and why (the batch's attempts)."""
    return "; ".join(a.describe() for a in result.batch.attempts) or "no exchange tried"


@dataclass
class _Bar:
    """The loop's view of one wake: the newest closed bar and its deadline."""

    time: pd.Timestamp        # open time of the newest closed bar
    close: pd.Timestamp       # its close time
    deadline: pd.Timestamp    # last moment it may be decided


class LiveLoop:
    """The loop's state and its per-bar work (:func:`run` drives it; see the module docstring).

    Args: as :func:`run`.
    """

    def __init__(self, engine: Any, lake: CandleLake, downloader: Downloader, production: Any,
                 spec: AccountSpec, *, now: Clock, sleep: Sleep,
                 stale_after: pd.Timedelta | float | None, settle_s: float,
                 market: Market | None, exchanges: Sequence[str] | None,
                 backoff_s: float, backoff_max_s: float, step_fn: Callable[..., Any],
                 compact_parts: int = 48) -> None:
        self.ledger = PaperLedger(engine)
        self.spec = self.ledger.open(spec)
        self.lake, self.downloader, self.production = lake, downloader, production
        self.now: Clock = lambda: _ts(now()).floor("us")  # the store keeps microseconds
        self.sleep = sleep
        self.bar = timeframe_to_timedelta(self.spec.timeframe)
        fresh = (self.bar / 2 if stale_after is None else
                 stale_after if isinstance(stale_after, pd.Timedelta)
                 else pd.Timedelta(seconds=float(stale_after)))
        self.stale_after = min(fresh, self.bar)
        self.settle = pd.Timedelta(seconds=float(settle_s))
        self.market = market or self.spec.execution.get("market") or downloader.markets.get(
            self.spec.symbol, "spot")
        self.msym = market_symbol(self.spec.symbol, self.market)
        self.exchanges = list(exchanges) if exchanges else None
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.step_fn = step_fn
        self.compact_parts = int(compact_parts)
        self.anchor = _ts(self.spec.anchor)
        self.result = LiveResult(self.spec.account)
        self._start: pd.Timestamp | None = None
        #: bars given up without their candle: the reason their skipped order will carry
        self.missed: dict[pd.Timestamp, str] = {}

    # ---- time ----------------------------------------------------------------------------

    def newest_closed(self) -> _Bar:
        forming = self.now().floor(self.bar)
        t = forming - self.bar
        return _Bar(t, forming, forming + self.stale_after)

    def wait_until(self, when: pd.Timestamp) -> None:
        seconds = (when - self.now()).total_seconds()
        if seconds > 0:
            self.sleep(seconds)

    # ---- data ----------------------------------------------------------------------------

    def request_start(self) -> pd.Timestamp:
        """``anchor - warmup_bars`` (the warm-up asked once; an HTTP probe may fail: Retry)."""
        if self._start is None:
            try:
                warmup = int(self.production.warmup_bars)
            except ProductionUnavailableError as exc:
                self.result.production_errors += 1
                raise Retry(f"production unreachable: {_one_line(exc)}") from None
            self._start = self.anchor - warmup * self.bar
        return self._start

    def download(self, bar: _Bar, start: pd.Timestamp) -> str:
        """Bring the lake up to date; the exchange whose partition to read.

        Raises:
            Retry: every exchange failed (outage).
            SkipBar: the batch broke a critical data rule (rejected).
        """
        result = download_ohlcv(self.downloader, self.lake, self.spec.symbol,
                                self.spec.timeframe, start, bar.close,
                                market=self.market, exchanges=self.exchanges)
        if result.batch.degraded:
            self.result.outages += 1
            raise Retry(f"exchange outage: every exchange failed ({describe_download(result)})")
        if result.rejected:
            raise SkipBar("download rejected (critical data rules failed): "
                          + _one_line(result.summary(), 240))
        exchange = result.batch.exchange
        assert exchange is not None
        if len(self.lake.parts(exchange, self.msym, self.spec.timeframe)) > self.compact_parts:
            self.lake.compact(exchange, self.msym, self.spec.timeframe)  # one part per bar else
        return exchange

    def candles(self, exchange: str, start: pd.Timestamp, bar: _Bar) -> pd.DataFrame:
        """The stored window ``[start, bar.time]``.

        Raises:
            Retry: the newest stored bar is older than ``bar.time`` (stale or missing).
        """
        frame = self.lake.read(exchange, self.msym, self.spec.timeframe, start=start,
                               end=bar.close)
        newest = None if frame.empty else _ts(frame["timestamp"].iloc[-1])
        if newest is None or newest < bar.time:
            seen = "none" if newest is None else f"{newest:%Y-%m-%d %H:%M}"
            raise Retry(f"stale bar: newest stored {self.spec.timeframe} bar on {exchange} is "
                        f"{seen}, older than the bar that just closed ({bar.time:%Y-%m-%d %H:%M})")
        return frame

    def answers(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Production's answers for the window.

        Raises:
            Retry: production unreachable. SkipBar: it refused the request.
        """
        from mlflow.exceptions import MlflowException

        from huracan.data.candle_request import InputRuleError

        try:
            return self.production.answer(candles)
        except (ProductionRejectedError, InputRuleError) as exc:
            raise SkipBar(f"production refused the request: {_one_line(exc)}") from None
        except (ProductionUnavailableError, MlflowException, LookupError, OSError) as exc:
            self.result.production_errors += 1
            raise Retry(f"production unreachable: {type(exc).__name__}: {_one_line(exc)}"
                        ) from None

    # ---- steps ---------------------------------------------------------------------------

    def write(self, candles: pd.DataFrame | None, answers: pd.DataFrame | None,
              bar_time: pd.Timestamp, reason: str | None, available_at: pd.Timestamp | None
              ) -> Any:
        """One step (the core's transaction) for ``bar_time`` with the candles and answers up
        to it; counted and logged (one line)."""
        from huracan.paper.loop import load_funding

        upto = None
        if candles is not None:
            upto = candles[pd.to_datetime(candles["timestamp"], utc=True) <= bar_time]
            upto = upto.reset_index(drop=True)
        ans = None
        if answers is not None:
            ans = answers[pd.to_datetime(answers["timestamp"], utc=True) <= bar_time]
            ans = ans.reset_index(drop=True)
        funding = None
        if self._start is not None:
            funding = load_funding(self.ledger.engine, self.spec.execution, self.spec.symbol,
                                   self._start, bar_time + 2 * self.bar)
        outcome = self.step_fn(self.ledger, self.spec, upto, ans, now=self.now(),
                               bar_time=bar_time, available_at=available_at,
                               skip_reason=reason, funding=funding)
        status = str(getattr(outcome, "status", "decided"))
        if status == "exists":  # another process wrote it: nothing written here
            return outcome
        self.result.bars += 1
        if status == "decided":
            self.result.decided += 1
        else:
            self.result.skipped += 1
        self.result.lines.append(self.describe(outcome, bar_time))
        log.info("%s", self.result.lines[-1])
        return outcome

    def describe(self, outcome: Any, bar_time: pd.Timestamp) -> str:
        """The bar's log line: status, target or reason, and the fill/mark of its predecessor."""
        status = getattr(outcome, "status", "?")
        target = getattr(outcome, "target_position", None)
        parts = [f"{self.spec.account} {bar_time:%Y-%m-%d %H:%M} {status}"]
        if status == "decided" and target is not None:
            parts.append(f"target {target:+.4f}")
        elif getattr(outcome, "reason", None):
            parts.append(f"({outcome.reason})")
        if getattr(outcome, "filled", False):
            parts.append(f"| previous bar filled, net {outcome.net_return:+.6f}, "
                         f"equity {outcome.equity:.6f}")
        return " ".join(parts)

    def pending(self, bar: _Bar, candles: pd.DataFrame | None) -> list[pd.Timestamp]:
        """Grid bars from the anchor (or after the newest order) that closed before ``bar``
        and hold no order yet: the catch-up after a restart or an outage. Bars without a candle
        are included (the core records them as skipped: missing bar)."""
        last = self.ledger.last_order_time(self.spec.account)
        first = self.anchor if last is None else max(self.anchor, _ts(last) + self.bar)
        if candles is None or first >= bar.time:
            return []
        return list(pd.date_range(first, bar.time - self.bar, freq=self.bar))

    def attempt(self, bar: _Bar) -> None:
        """Download, read, ask and step ``bar`` (and the pending bars before it).

        Raises:
            Retry, SkipBar: see :meth:`download`, :meth:`candles`, :meth:`answers`.
        """
        start = self.request_start()
        exchange = self.download(bar, start)
        available = self.now()
        candles = self.candles(exchange, start, bar)
        for t in self.pending(bar, candles):
            self.write(candles, None, t, self.late_reason(t, available), available)
        began = time.perf_counter()
        answers = self.answers(candles)
        answers = answers.assign(  # the prediction row's inputs location and answer latency
            _inputs_path=str(self.lake.partition(exchange, self.msym, self.spec.timeframe)),
            _latency_ms=(time.perf_counter() - began) * 1000.0)
        if self.now() > bar.deadline:
            raise SkipBar(f"late: decided after the {self.stale_after} freshness limit")
        self.write(candles, answers, bar.time, None, available)

    def stored(self, bar: _Bar) -> pd.DataFrame | None:
        """The lake's window ``[request_start, bar.time]`` (first exchange partition holding
        bars), or None (warm-up not known yet, or nothing stored)."""
        if self._start is None:
            return None
        for ex in self.exchanges or self.downloader.exchanges:
            frame = self.lake.read(ex, self.msym, self.spec.timeframe, start=self._start,
                                   end=bar.close)
            if not frame.empty:
                return frame
        return None

    def give_up(self, bar: _Bar, reason: str) -> None:
        """Bar ``bar`` gets no decision. When its candle is stored, its skipped order is written
        now (the step also fills and marks its predecessor); when it is not (outage, stale or
        missing bar), the reason is kept and the skipped order written by the first later step
        that has the candle (:meth:`pending`), so the predecessor's fill at this bar's open is
        not lost."""
        candles = self.stored(bar)
        have = candles is not None and bool((pd.to_datetime(candles["timestamp"], utc=True)
                                             == bar.time).any())
        if not have:
            self.missed[bar.time] = reason
            line = (f"{self.spec.account} {bar.time:%Y-%m-%d %H:%M} no decision: {reason} "
                    "(skipped order written once the bar's candle is stored)")
            self.result.lines.append(line)
            log.warning("%s", line)
            return
        for t in self.pending(bar, candles):
            self.write(candles, None, t, self.late_reason(t, None), None)
        self.write(candles, None, bar.time, reason, None)

    def late_reason(self, t: pd.Timestamp, seen: pd.Timestamp | None) -> str:
        """The reason of a pending bar's skipped order: the failure remembered for it, else
        ``late: ...``."""
        if t in self.missed:
            return self.missed.pop(t)
        when = f", seen at {seen:%Y-%m-%d %H:%M}" if seen is not None else ""
        return (f"late: closed at {t + self.bar:%Y-%m-%d %H:%M}{when} (after the "
                f"{self.stale_after} freshness limit)")

    def work(self, bar: _Bar, stop: threading.Event) -> None:
        """Step ``bar``: attempts with backoff until done, skipped, or past its deadline."""
        wait = self.backoff_s
        while True:
            try:
                self.attempt(bar)
                return
            except SkipBar as exc:
                self.give_up(bar, str(exc))
                return
            except Retry as exc:
                reason = str(exc)
            remaining = (bar.deadline - self.now()).total_seconds()
            if remaining <= 0 or stop.is_set():
                self.give_up(bar, reason)
                return
            pause = min(wait, self.backoff_max_s, remaining)
            log.warning("%s %s: %s; retrying in %.1f s", self.spec.account,
                        f"{bar.time:%Y-%m-%d %H:%M}", reason, pause)
            self.result.retries += 1
            self.sleep(pause)
            wait = min(wait * 2.0, self.backoff_max_s)

    def stepped(self, bar: _Bar) -> bool:
        """True when ``bar`` holds an order, or was given up without its candle."""
        if bar.time in self.missed:
            return True
        last = self.ledger.last_order_time(self.spec.account)
        return last is not None and _ts(last) >= bar.time


def run(engine: Any, lake: CandleLake, downloader: Downloader, production: Any,
        spec: AccountSpec, *, now: Clock | None = None, sleep: Sleep | None = None,
        max_bars: int | None = None, stale_after: pd.Timedelta | float | None = None,
        settle_s: float = 5.0, market: Market | None = None,
        exchanges: Sequence[str] | None = None, backoff_s: float = 5.0,
        backoff_max_s: float = 60.0, stop: threading.Event | None = None,
        step_fn: Callable[..., Any] | None = None, compact_parts: int = 48) -> LiveResult:
    """Run the live paper loop of ``spec`` until ``max_bars`` bar steps were written, or a
    SIGTERM/SIGINT (or ``stop``) arrives (see the module docstring).

    Args:
        engine: the brain store (schema at head).
        lake: the candle lake the downloads go into and the requests are read from.
        downloader: the Downloader (:func:`huracan.data.sources.make_downloader`); its retry
            policy handles each request, its ``now`` should be this loop's clock.
        production: a :class:`huracan.paper.production.Production` (``label``,
            ``warmup_bars``, ``answer(candles)``).
        spec: the account (opened if new; a stored account's settings win).
        now: the clock (default the Downloader's ``now``). sleep: how waits pass (default
            ``stop.wait``: a signal ends a wait at once).
        max_bars: stop after this many bar steps (default: run until stopped).
        stale_after: freshness limit after a bar's close (Timedelta or seconds; default half
            the timeframe, at most one bar).
        settle_s: seconds waited after a close before downloading.
        market, exchanges: the market (default the account's ``execution['market']``) and the
            exchanges to try first (default the Downloader's order).
        backoff_s, backoff_max_s: the loop-level backoff (doubling, capped).
        stop: an event that ends the loop between bars (set by the signal handlers).
        step_fn: the step (default :func:`huracan.paper.loop.step`).
        compact_parts: compact the lake partition when it holds more part files than this.

    Returns:
        :class:`LiveResult`.
    """
    from huracan.paper import loop as core

    stop = stop or threading.Event()
    state = LiveLoop(engine, lake, downloader, production, spec, now=now or downloader.now,
                     sleep=sleep or interruptible_sleep(stop), stale_after=stale_after,
                     settle_s=settle_s, market=market, exchanges=exchanges,
                     backoff_s=backoff_s, backoff_max_s=backoff_max_s,
                     step_fn=step_fn or core.step, compact_parts=compact_parts)
    result = state.result
    log.info("paper loop %s: %s %s from %s, asking %s", result.account, state.spec.symbol,
             state.spec.timeframe, f"{state.anchor:%Y-%m-%d %H:%M}", production.label)
    with stop_on_signals(stop):
        while True:
            if stop.is_set():
                result.stopped = "signal"
                break
            if max_bars is not None and result.bars >= max_bars:
                result.stopped = "max_bars"
                break
            bar = state.newest_closed()
            if bar.time < state.anchor or state.stepped(bar):
                upcoming = max(bar.close + state.bar, state.anchor + state.bar)
                state.wait_until(upcoming + state.settle)
                continue
            state.wait_until(bar.close + state.settle)
            if stop.is_set():
                continue
            result.wakes += 1
            state.ledger.heartbeat(result.account, state.now())
            state.work(bar, stop)
    log.info("paper loop %s stopped (%s): %d bar(s), %d decided, %d skipped", result.account,
             result.stopped, result.bars, result.decided, result.skipped)
    return result


__all__ = ["LiveLoop", "LiveResult", "interruptible_sleep", "run", "stop_on_signals",
           "wall_clock"]
