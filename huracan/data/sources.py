"""Download market data through ccxt: paginated, rate-limit aware, retried, with exchange fallback.

What is downloaded, and where it goes:

- OHLCV candles (spot or USDT perpetual) -> the Parquet lake (:mod:`huracan.data.lake`); only the
  bars the lake lacks are requested (:func:`download_ohlcv`).
- Funding-rate history and open-interest history (USDT perpetuals) -> the brain store tables
  ``funding_rates`` and ``open_interest`` through :mod:`huracan.data.ingest` (row checks, upserts);
  only what is newer than the newest stored row is requested (:func:`download_derivatives`).
- Liquidations have no public REST history on Binance: see :mod:`huracan.data.liquidations`.

Every batch is validated by its Great Expectations suite (:mod:`huracan.data.validate`) before it
is stored; every finding goes to the data-quality sink (``data_quality_logs``).

Failure handling (the policy the tests check):

1. **Retry** each HTTP call on ccxt's transient errors, :data:`TRANSIENT_ERRORS` (``NetworkError``
   and its subclasses ``RequestTimeout``, ``RateLimitExceeded``/``DDoSProtection``,
   ``ExchangeNotAvailable``), with exponential backoff and jitter (tenacity
   ``wait_exponential_jitter``: ``min(max_s, initial_s × exp_base^k + U(0, jitter_s))`` before
   retry ``k+1``), at most :attr:`RetryPolicy.attempts` tries. Anything else (``BadSymbol``,
   ``AuthenticationError``, ``NotSupported``, ``BadRequest``) is never retried.
2. **Fall back** to the next exchange in the order (default :data:`DEFAULT_EXCHANGES`: binance,
   then bybit, then okx) when retries are exhausted or a non-transient error occurs (a symbol not
   listed on one exchange may be listed on the next). A batch is atomic per exchange: rows from an
   exchange that failed half-way are dropped, so a lake partition never mixes exchanges.
3. **Degraded**: when every exchange failed, the batch is marked degraded and logged
   (``degraded_batch``, critical); each failed exchange is logged too (``retry_exhausted`` or
   ``exchange_error``, warning).

Rate limits: ccxt's own throttle (``enableRateLimit=True``) spaces requests by the exchange's
documented weight; the retry policy handles the 429/418 answers that still happen. When such an
answer (ccxt ``RateLimitExceeded``/``DDoSProtection``) carries a ``Retry-After`` header (RFC 9110
section 10.2.3: delay seconds or an HTTP-date), the wait before that retry is exactly what it asks,
capped at :attr:`RetryPolicy.retry_after_max_s` (60 s), instead of the exponential backoff
(:class:`wait_retry_after`); Binance documents sending it with every 429/418. A longer ban (Binance
418s can ask for minutes to days) is not waited out: the capped retries exhaust and the download
falls back to the next exchange.

Pagination walks forward in windows of ``limit`` bars, passing both ``since`` and ``until`` (the
only form Bybit and OKX page forward with: given a start alone they return the NEWEST bars). A
window that comes back empty (an outage, or before the listing) is skipped. The bar still forming
is never stored: ``until`` is clamped to the open time of the current bar.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import ccxt
import pandas as pd
import tenacity

from huracan.data.lake import CandleLake
from huracan.data.ohlcv import OHLCV_COLUMNS, timeframe_to_timedelta
from huracan.data.quality import QualityIssue, QualitySink, record
from huracan.data.validate import SuiteRunner, ValidationConfig, ValidationReport, validate_frame
from huracan.timeutil import to_utc

log = logging.getLogger(__name__)

#: Default fallback order.
DEFAULT_EXCHANGES: tuple[str, ...] = ("binance", "bybit", "okx")
#: ccxt errors worth retrying (all are ``NetworkError`` subclasses; listed for the reader).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ccxt.RequestTimeout, ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.ExchangeNotAvailable,
    ccxt.NetworkError)


def is_transient(exc: BaseException) -> bool:
    """True for :data:`TRANSIENT_ERRORS`, and for a bare ``ccxt.OperationFailed``: ccxt raises
    exactly that class for "server busy, try again" answers (Binance ``-1008``), whereas its
    subclasses ``BadResponse``/``CancelPending`` are not about load and are not retried."""
    return isinstance(exc, TRANSIENT_ERRORS) or type(exc) is ccxt.OperationFailed
#: Largest page each exchange serves per request (its documented maximum).
PAGE_LIMITS: dict[str, dict[str, int]] = {
    "binance": {"ohlcv": 1000, "funding": 1000, "open_interest": 500},
    "bybit": {"ohlcv": 1000, "funding": 200, "open_interest": 200},
    "okx": {"ohlcv": 100, "funding": 100, "open_interest": 100},
}
#: Market types loaded by ``load_markets`` (spot + USDT-margined swaps only: fewer requests).
MARKET_TYPES: dict[str, list[str]] = {
    "binance": ["spot", "linear"],
    "bybit": ["spot", "linear"],
    "okx": ["spot", "swap"],
}
Market = Literal["spot", "perp"]
Kind = Literal["ohlcv", "funding", "open_interest"]
MS = 1
FUNDING_STEP = "8h"  # window size of funding pages (Binance/Bybit/OKX settle every 8 h or faster)


def market_symbol(symbol: str, market: Market = "spot") -> str:
    """The ccxt unified symbol: ``BTC/USDT`` for spot, ``BTC/USDT:USDT`` for the USDT-settled
    perpetual. A symbol that already names its settlement (``BTC/USDT:USDT``) is kept.

    Raises:
        ValueError: ``symbol`` is not ``BASE/QUOTE`` or ``market`` is unknown.
    """
    if ":" in symbol:
        return symbol
    base, sep, quote = symbol.partition("/")
    if not (base and sep and quote):
        raise ValueError(f"symbol {symbol!r} is not BASE/QUOTE (e.g. BTC/USDT)")
    if market == "spot":
        return symbol
    if market == "perp":
        return f"{symbol}:{quote}"
    raise ValueError(f"market must be 'spot' or 'perp', got {market!r}")


def pair_of(symbol: str) -> str:
    """``BTC/USDT:USDT`` -> ``BTC/USDT`` (the brain store's symbol convention)."""
    return symbol.split(":", 1)[0]


def make_exchange(exchange_id: str, *, timeout_ms: int = 30_000) -> ccxt.Exchange:
    """A synchronous ccxt exchange with rate limiting on, loading only spot and USDT-swap markets.

    Raises:
        ValueError: ccxt has no exchange ``exchange_id``.
    """
    cls = getattr(ccxt, exchange_id, None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(f"ccxt has no exchange {exchange_id!r}")
    ex = cls({"enableRateLimit": True, "timeout": timeout_ms})
    if exchange_id in MARKET_TYPES:
        opts = dict(ex.options.get("fetchMarkets") or {})
        opts["types"] = MARKET_TYPES[exchange_id]
        ex.options["fetchMarkets"] = opts
    return ex


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient ccxt errors (tenacity).

    The wait before retry ``k`` (1-based) is ``min(max_s, initial_s × exp_base^(k-1) + U(0,
    jitter_s))`` seconds (``tenacity.wait_exponential_jitter``, the "exponential backoff and
    jitter" of the AWS Architecture Blog, 2015). Defaults: 5 tries, waits of about 1, 2, 4, 8 s
    plus up to 1 s of jitter. A 429/418 answer with a ``Retry-After`` header is waited exactly
    that long instead, at most ``retry_after_max_s`` seconds (:class:`wait_retry_after`).
    """

    attempts: int = 5
    initial_s: float = 1.0
    max_s: float = 30.0
    exp_base: float = 2.0
    jitter_s: float = 1.0
    #: Longest ``Retry-After`` honoured (seconds); a longer one is cut to this.
    retry_after_max_s: float = 60.0

    def wait(self) -> tenacity.wait.wait_base:
        """The exponential backoff with jitter (used when no ``Retry-After`` applies)."""
        return tenacity.wait_exponential_jitter(initial=self.initial_s, max=self.max_s,
                                                exp_base=self.exp_base, jitter=self.jitter_s)


RATE_LIMIT_ERRORS: tuple[type[Exception], ...] = (ccxt.RateLimitExceeded, ccxt.DDoSProtection)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait (RFC 9110 section 10.2.3): either
    ``delay-seconds`` (``"2"``, ``"1.5"`` tolerated) or an HTTP-date (``"Wed, 21 Oct 2015
    07:28:00 GMT"``, minus ``now``, Unix seconds, default the wall clock; a past date gives 0).
    ``None`` for a missing or unparsable value."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def response_headers(exc: BaseException | None, exchange: Any = None) -> Mapping[str, str] | None:
    """The HTTP response headers behind a ccxt error: those of the ``requests`` error it was
    raised from (``raise_for_status``), else the exchange's ``last_response_headers``."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        response = getattr(cur, "response", None)
        headers = getattr(response, "headers", None)
        if headers is not None:
            return headers  # requests' CaseInsensitiveDict
        cur = cur.__cause__ or cur.__context__
        seen += 1
    headers = getattr(exchange, "last_response_headers", None)
    return headers if isinstance(headers, Mapping) else None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    lowered = name.lower()
    for key, value in headers.items():
        if str(key).lower() == lowered:
            return str(value)
    return None


class wait_retry_after(tenacity.wait.wait_base):  # noqa: N801 - tenacity's naming of waits
    """Tenacity wait: after a rate-limit error (:data:`RATE_LIMIT_ERRORS`) whose response has a
    ``Retry-After`` header, wait what it asks (:func:`retry_after_seconds`), at most
    ``max_s``; otherwise (another error, no or bad header) wait ``fallback``.

    Args:
        fallback: the usual backoff (:meth:`RetryPolicy.wait`).
        max_s: cap on the honoured delay (seconds).
        headers_of: the response headers behind an exception (default
            :func:`response_headers` without an exchange).
        now: Unix time for HTTP-date values (default ``time.time``).
    """

    def __init__(self, fallback: tenacity.wait.wait_base, max_s: float,
                 headers_of: Callable[[BaseException], Mapping[str, str] | None] | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.fallback = fallback
        self.max_s = max_s
        self.headers_of = headers_of or response_headers
        self.now = now

    def requested(self, retry_state: tenacity.RetryCallState) -> float | None:
        """The capped ``Retry-After`` delay that applies to this retry, or ``None``."""
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if not isinstance(exc, RATE_LIMIT_ERRORS):
            return None
        seconds = retry_after_seconds(_header(self.headers_of(exc), "Retry-After"), self.now())
        return None if seconds is None else min(seconds, self.max_s)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        seconds = self.requested(retry_state)
        return self.fallback(retry_state) if seconds is None else seconds


@dataclass
class Attempt:
    """One exchange's try at a batch: requests made, retries, and the error that ended it."""

    exchange: str
    ok: bool = False
    requests: int = 0
    retries: int = 0
    rows: int = 0
    error: str | None = None
    transient: bool = False

    def describe(self) -> str:
        if self.ok:
            return f"{self.exchange}: {self.rows} rows in {self.requests} request(s)" + (
                f", {self.retries} retr{'y' if self.retries == 1 else 'ies'}"
                if self.retries else "")
        kind = "retries exhausted" if self.transient else "not retried"
        return f"{self.exchange}: {self.error} ({kind}, {self.retries} retries)"


@dataclass
class Batch:
    """What one download produced.

    Attributes:
        kind: ``ohlcv``, ``funding`` or ``open_interest``.
        symbol: the pair as requested (``BTC/USDT``).
        market_symbol: the ccxt symbol fetched (``BTC/USDT:USDT`` for perpetuals).
        timeframe: bar size (funding: the window step, ``8h``).
        ranges: the half-open ``[start, end)`` ranges requested from the serving exchange.
        frame: the rows: OHLCV columns for candles; ``timestamp, funding_rate`` for funding;
            ``timestamp, open_interest, open_interest_usd`` for open interest. Timestamps UTC.
        exchange: the exchange that served it; ``None`` when all failed (degraded).
        attempts: every exchange tried, in order.
    """

    kind: str
    symbol: str
    market_symbol: str
    timeframe: str
    ranges: list[tuple[pd.Timestamp, pd.Timestamp]]
    frame: pd.DataFrame
    exchange: str | None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        """True when no exchange could serve the batch."""
        return self.exchange is None

    @property
    def retries(self) -> int:
        return sum(a.retries for a in self.attempts)

    @property
    def requests(self) -> int:
        return sum(a.requests for a in self.attempts)

    @property
    def source(self) -> str:
        """``binance:BTC/USDT:ohlcv:1h`` (the data-quality log's source)."""
        return f"{self.exchange or 'none'}:{self.market_symbol}:{self.kind}:{self.timeframe}"


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


class Downloader:
    """Paginated ccxt downloads with retry, fallback and data-quality logging.

    Args:
        exchanges: fallback order (ccxt ids).
        factory: builds an exchange object from its id (default :func:`make_exchange`; tests pass
            one that stubs the HTTP layer).
        retry: the backoff policy.
        sleep: how retries wait (``time.sleep``; tests record the waits instead).
        markets: per-symbol market for candles (``{"BTC/USDT": "perp"}``); default spot.
        sink: where failures are logged (``DbQualitySink`` -> ``data_quality_logs``).
        now: the current time (for the still-forming bar); default the wall clock.
        progress: called with the number of rows of each page (a progress bar).
    """

    def __init__(
        self,
        exchanges: Sequence[str] = DEFAULT_EXCHANGES,
        *,
        factory: Callable[[str], ccxt.Exchange] = make_exchange,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        markets: Mapping[str, Market] | None = None,
        sink: QualitySink | None = None,
        now: Callable[[], pd.Timestamp] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if not exchanges:
            raise ValueError("at least one exchange is needed")
        self.exchanges = tuple(exchanges)
        self.factory = factory
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.markets = dict(markets or {})
        self.sink = sink
        self.now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self.progress = progress
        self.waits: list[float] = []  # every backoff wait computed (seconds), for reports/tests
        self._clients: dict[str, ccxt.Exchange] = {}

    # ---- plumbing ------------------------------------------------------------------------

    def call(self, attempt: Attempt, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (one HTTP call) under the retry policy; transient errors are retried,
        the last one re-raised; other errors are raised at once."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            attempt.retries += 1
            wait = state.next_action.sleep if state.next_action else 0.0
            self.waits.append(wait)
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: %s (try %d/%d); retrying in %.2f s", attempt.exchange,
                        _first_line(exc) if exc else "error", state.attempt_number,
                        self.retry.attempts, wait)

        def headers_of(exc: BaseException) -> Mapping[str, str] | None:
            return response_headers(exc, self._clients.get(attempt.exchange))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.attempts),
            wait=wait_retry_after(self.retry.wait(), self.retry.retry_after_max_s, headers_of),
            retry=tenacity.retry_if_exception(is_transient),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

    def client(self, exchange_id: str, attempt: Attempt) -> ccxt.Exchange:
        """The exchange object with its markets loaded (retried like any call)."""
        ex = self._clients.get(exchange_id)
        if ex is None:
            ex = self.factory(exchange_id)
            self._clients[exchange_id] = ex
        if not ex.markets:
            attempt.requests += 1
            self.call(attempt, ex.load_markets)
        return ex

    def order(self, prefer: Sequence[str] | None = None, fallback: bool = True) -> list[str]:
        """The exchanges to try: ``prefer`` first, then (with ``fallback``) the rest."""
        if not prefer:
            return list(self.exchanges)
        rest = [e for e in self.exchanges if e not in prefer] if fallback else []
        return [*prefer, *rest]

    def _log(self, issue_type: str, severity: str, symbol: str, source: str,
             details: dict[str, Any]) -> None:
        issue = QualityIssue(source, issue_type, severity, details, symbol)
        if severity != "info":
            record(issue, self.sink)  # logged at warning/error level, then written
            return
        log.info("%s", details.get("message", issue_type))
        if self.sink is not None:
            self.sink.write(issue)

    def _paginate(self, attempt: Attempt, fetch: Callable[[int, int, int], list[Any]],
                  ts_of: Callable[[Any], int], ranges: Iterable[tuple[pd.Timestamp, pd.Timestamp]],
                  step_ms: int, advance_ms: int, limit: int) -> list[Any]:
        """Walk each ``[start, end)`` in windows of ``limit`` steps; ``fetch(since, until,
        limit)`` is one request (``until`` inclusive, ms). ``limit`` must not exceed what the
        exchange serves per request (:data:`PAGE_LIMITS`): a shorter page is taken to be the
        whole window."""
        rows: list[Any] = []
        for start, end in ranges:
            cursor, end_ms = _ms(start), _ms(end)
            while cursor < end_ms:
                window_end = min(end_ms, cursor + step_ms * limit) - 1
                since = cursor
                page = self.call(attempt, functools.partial(fetch, since, window_end, limit))
                attempt.requests += 1
                kept = [r for r in page if since <= ts_of(r) < end_ms]
                rows.extend(kept)
                if self.progress is not None:
                    self.progress(len(kept))
                last = max((ts_of(r) for r in kept), default=None)
                # a short page holds all the window had: go on after the window; a full page
                # may have been cut at `limit`: go on after its last row
                if last is not None and len(page) >= limit:
                    cursor = max(last + advance_ms, cursor + 1)
                else:
                    cursor = window_end + 1
        return rows

    def _fallback(self, kind: str, symbol: str, msym: str, timeframe: str,
                  ranges_for: Callable[[str], list[tuple[pd.Timestamp, pd.Timestamp]]],
                  fetch: Callable[[ccxt.Exchange, str, Attempt, list[Any]], pd.DataFrame],
                  order: Sequence[str]) -> Batch:
        attempts: list[Attempt] = []
        for ex_id in order:
            attempt = Attempt(ex_id)
            attempts.append(attempt)
            ranges = ranges_for(ex_id)
            source = f"{ex_id}:{msym}:{kind}:{timeframe}"
            try:
                if not ranges:  # up to date: nothing to ask for
                    attempt.ok = True
                    return Batch(kind, symbol, msym, timeframe, [], _empty(kind), ex_id,
                                 attempts)
                ex = self.client(ex_id, attempt)
                frame = fetch(ex, ex_id, attempt, ranges)
            except ccxt.BaseError as exc:
                attempt.error, attempt.transient = _first_line(exc), is_transient(exc)
                if not attempt.transient:
                    self._log("exchange_error", "warning", symbol, source, {
                        "exchange": ex_id, "kind": kind, "error": attempt.error,
                        "error_type": type(exc).__name__,
                        "message": f"{source}: {attempt.error} (not retried); falling back"})
                    continue
                self._log("retry_exhausted", "warning", symbol, source, {
                    "exchange": ex_id, "kind": kind, "error": attempt.error,
                    "retries": attempt.retries, "requests": attempt.requests,
                    "message": f"{source}: {attempt.error} after {attempt.retries} retries; "
                               "falling back"})
                continue
            attempt.ok, attempt.rows = True, len(frame)
            batch = Batch(kind, symbol, msym, timeframe, ranges, frame, ex_id, attempts)
            self._log("download_batch", "info", symbol, batch.source, {
                "exchange": ex_id, "kind": kind, "timeframe": timeframe, "rows": len(frame),
                "requests": batch.requests, "retries": batch.retries,
                "ranges": [[str(a), str(b)] for a, b in ranges],
                "fallback_from": [a.exchange for a in attempts[:-1]],
                "message": f"{batch.source}: {len(frame)} rows"})
            return batch
        batch = Batch(kind, symbol, msym, timeframe, ranges_for(order[0]) if order else [],
                      _empty(kind), None, attempts)
        self._log("degraded_batch", "critical", symbol, batch.source, {
            "kind": kind, "timeframe": timeframe,
            "ranges": [[str(a), str(b)] for a, b in batch.ranges],
            "attempts": [a.describe() for a in attempts],
            "message": f"{msym} {kind} {timeframe}: every exchange failed ("
                       + "; ".join(a.describe() for a in attempts) + "): batch DEGRADED"})
        return batch

    def closed_until(self, until: pd.Timestamp | str | None, timeframe: str) -> pd.Timestamp:
        """``until`` clamped to the open time of the bar still forming (default: that time),
        so that only closed bars are requested."""
        current_bar = self.now().floor(timeframe_to_timedelta(timeframe))
        return current_bar if until is None else min(to_utc(until), current_bar)

    # ---- downloads -----------------------------------------------------------------------

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: pd.Timestamp | str,
        until: pd.Timestamp | str | None = None, *, market: Market | None = None,
        exchanges: Sequence[str] | None = None, fallback: bool = True,
        ranges_for: Callable[[str], list[tuple[pd.Timestamp, pd.Timestamp]]] | None = None,
    ) -> Batch:
        """Closed candles of ``symbol`` with open time in ``[since, until)`` (``until``: default
        and at most the open time of the bar still forming).

        Args:
            symbol: ``BTC/USDT`` (market from ``market``, else :attr:`markets`, else spot) or a
                ccxt symbol (``BTC/USDT:USDT``).
            exchanges, fallback: see :meth:`order`.
            ranges_for: per exchange, the ranges still missing (the lake's
                :meth:`~huracan.data.lake.CandleLake.missing_ranges`); default ``[since, until)``.
        """
        step = timeframe_to_timedelta(timeframe)
        msym = market_symbol(symbol, market or self.markets.get(symbol, "spot"))
        start, end = to_utc(since), self.closed_until(until, timeframe)

        def fetch(ex: ccxt.Exchange, ex_id: str, attempt: Attempt, ranges: list[Any]
                  ) -> pd.DataFrame:
            ex.market(msym)  # BadSymbol before any request when not listed
            limit = PAGE_LIMITS.get(ex_id, {}).get("ohlcv", 500)
            rows = self._paginate(
                attempt, lambda s, u, n: ex.fetch_ohlcv(msym, timeframe, s, n, {"until": u}),
                lambda r: int(r[0]), ranges, _ms_of(step), _ms_of(step), limit)
            return _ohlcv_frame(rows)

        return self._fallback("ohlcv", symbol, msym, timeframe,
                              ranges_for or (lambda _ex: [(start, end)] if start < end else []),
                              fetch, self.order(exchanges, fallback))

    def fetch_funding(
        self, symbol: str, since: pd.Timestamp | str, until: pd.Timestamp | str | None = None,
        *, exchanges: Sequence[str] | None = None, fallback: bool = True,
        ranges_for: Callable[[str], list[tuple[pd.Timestamp, pd.Timestamp]]] | None = None,
    ) -> Batch:
        """Settled funding rates of the USDT perpetual of ``symbol`` in ``[since, until)``:
        frame ``timestamp, funding_rate`` (fraction per interval)."""
        msym = market_symbol(symbol, "perp")
        start = to_utc(since)
        end = to_utc(until) if until is not None else self.now()
        step = timeframe_to_timedelta(FUNDING_STEP)

        def fetch(ex: ccxt.Exchange, ex_id: str, attempt: Attempt, ranges: list[Any]
                  ) -> pd.DataFrame:
            ex.market(msym)
            limit = PAGE_LIMITS.get(ex_id, {}).get("funding", 100)

            def page(s: int, u: int, n: int) -> list[Any]:
                params: dict[str, Any] = {"until": u}
                if ex_id == "okx":  # OKX pages funding with before/after only (ccxt maps before)
                    params["after"] = u + 1
                return ex.fetch_funding_rate_history(msym, s, n, params)

            rows = self._paginate(attempt, page, lambda r: int(r["timestamp"]), ranges,
                                  _ms_of(step), MS, limit)
            return _funding_frame(rows)

        return self._fallback("funding", symbol, msym, FUNDING_STEP,
                              ranges_for or (lambda _ex: [(start, end)] if start < end else []),
                              fetch, self.order(exchanges, fallback))

    def fetch_open_interest(
        self, symbol: str, timeframe: str, since: pd.Timestamp | str,
        until: pd.Timestamp | str | None = None, *, exchanges: Sequence[str] | None = None,
        fallback: bool = True,
        ranges_for: Callable[[str], list[tuple[pd.Timestamp, pd.Timestamp]]] | None = None,
    ) -> Batch:
        """Open-interest history of the USDT perpetual of ``symbol`` (``timeframe`` buckets,
        e.g. ``1h``; Binance keeps 30 days): frame ``timestamp, open_interest`` (contracts/base
        units), ``open_interest_usd`` (NaN where the exchange gives no USD value)."""
        step = timeframe_to_timedelta(timeframe)
        msym = market_symbol(symbol, "perp")
        start, end = to_utc(since), self.closed_until(until, timeframe)

        def fetch(ex: ccxt.Exchange, ex_id: str, attempt: Attempt, ranges: list[Any]
                  ) -> pd.DataFrame:
            ex.market(msym)
            limit = PAGE_LIMITS.get(ex_id, {}).get("open_interest", 100)
            rows = self._paginate(
                attempt,
                lambda s, u, n: ex.fetch_open_interest_history(msym, timeframe, s, n,
                                                               {"until": u}),
                lambda r: int(r["timestamp"]), ranges, _ms_of(step), _ms_of(step), limit)
            return _open_interest_frame(rows)

        return self._fallback("open_interest", symbol, msym, timeframe,
                              ranges_for or (lambda _ex: [(start, end)] if start < end else []),
                              fetch, self.order(exchanges, fallback))


def _ms_of(step: pd.Timedelta) -> int:
    return int(step.value // 1_000_000)


def _empty(kind: str) -> pd.DataFrame:
    cols = {"ohlcv": list(OHLCV_COLUMNS), "funding": ["timestamp", "funding_rate"],
            "open_interest": ["timestamp", "open_interest", "open_interest_usd"]}[kind]
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    df["timestamp"] = pd.Series(dtype="datetime64[ms, UTC]")
    return df


def _ohlcv_frame(rows: list[list[Any]]) -> pd.DataFrame:
    if not rows:
        return _empty("ohlcv")
    df = pd.DataFrame([r[:6] for r in rows], columns=list(OHLCV_COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"].astype("int64"), unit="ms", utc=True)
    df[list(OHLCV_COLUMNS[1:])] = df[list(OHLCV_COLUMNS[1:])].astype("float64")
    return (df.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
            .reset_index(drop=True))


def _funding_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return _empty("funding")
    df = pd.DataFrame({"timestamp": [r["timestamp"] for r in rows],
                       "funding_rate": [r.get("fundingRate") for r in rows]})
    df["timestamp"] = pd.to_datetime(df["timestamp"].astype("int64"), unit="ms", utc=True)
    df["funding_rate"] = pd.to_numeric(df["funding_rate"], errors="coerce").astype("float64")
    return (df.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
            .reset_index(drop=True))


def _open_interest_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return _empty("open_interest")
    df = pd.DataFrame({"timestamp": [r["timestamp"] for r in rows],
                       "open_interest": [r.get("openInterestAmount") for r in rows],
                       "open_interest_usd": [r.get("openInterestValue") for r in rows]})
    df["timestamp"] = pd.to_datetime(df["timestamp"].astype("int64"), unit="ms", utc=True)
    for c in ("open_interest", "open_interest_usd"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return (df.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
            .reset_index(drop=True))


# --------------------------------------------------------------------------------------------
# Jobs: download -> validate -> store
# --------------------------------------------------------------------------------------------

@dataclass
class DownloadResult:
    """A download job's outcome: the batch, its validation, and what was stored.

    ``stored`` is the number of new rows written (lake bars, or table rows inserted/updated);
    ``rejected`` is True when critical row-level rules failed and nothing was stored.
    """

    batch: Batch
    reports: list[ValidationReport]
    stored: int = 0
    location: str | None = None
    rejected: bool = False
    validation_s: float = 0.0

    @property
    def gaps(self) -> int:
        return sum(len(r.gaps) for r in self.reports)

    @property
    def bars_missing(self) -> int:
        return sum(g.bars_missing for r in self.reports for g in r.gaps)

    @property
    def degraded(self) -> bool:
        """No exchange served it, or coverage (or another critical rule) failed."""
        return self.batch.degraded or self.rejected or any(not r.passed for r in self.reports)

    @property
    def ok(self) -> bool:
        return not self.degraded

    def summary(self) -> str:
        b = self.batch
        served = b.exchange or "NO EXCHANGE"
        parts = [f"{b.symbol} {b.kind} {b.timeframe} from {served}: fetched {len(b.frame)} "
                 f"row(s) in {b.requests} request(s), {b.retries} retr"
                 f"{'y' if b.retries == 1 else 'ies'}"]
        failed = [a.exchange for a in b.attempts if not a.ok]
        if failed and b.exchange:
            parts.append(f"fell back from {', '.join(failed)}")
        rows = sum(r.rows for r in self.reports)
        crit = sum(len(r.critical) for r in self.reports)
        parts.append(f"validated {rows} in {self.validation_s:.2f} s ({self.gaps} gap(s), "
                     f"{self.bars_missing} bar(s) missing, {crit} critical)")
        if self.rejected:
            parts.append("NOT stored (critical rules failed)")
        else:
            parts.append(f"stored {self.stored} new" + (f" -> {self.location}"
                                                          if self.location else ""))
        status = "OK" if self.ok else "DEGRADED"
        return "; ".join(parts) + f" [{status}]"


_STRUCTURAL_OK = {"coverage", "gap", "funding_rate_unusual", "events_in_time_order"}


def _validate_batch(batch: Batch, suite: str, timeframe: str | None, sink: QualitySink | None,
                    runner: SuiteRunner | None, config: ValidationConfig | None
                    ) -> tuple[list[ValidationReport], bool, float]:
    """Validate each requested range of ``batch``; ``(reports, rejected, seconds)``.

    ``rejected``: a critical rule other than coverage failed (bad rows): do not store. Low
    coverage alone leaves the batch storable but degraded.
    """
    if batch.degraded or not batch.ranges:
        return [], False, 0.0
    t0 = time.perf_counter()
    reports = []
    for start, end in batch.ranges:
        ts = batch.frame["timestamp"]
        part = batch.frame[(ts >= start) & (ts < end)]
        reports.append(validate_frame(part, suite, source=batch.source, symbol=batch.symbol,
                                      timeframe=timeframe, window=(start, end), sink=sink,
                                      runner=runner, config=config))
    rejected = any(i.issue_type not in _STRUCTURAL_OK for r in reports for i in r.critical)
    return reports, rejected, time.perf_counter() - t0


def download_ohlcv(
    downloader: Downloader, lake: CandleLake, symbol: str, timeframe: str,
    since: pd.Timestamp | str, until: pd.Timestamp | str | None = None, *,
    market: Market | None = None, exchanges: Sequence[str] | None = None, fallback: bool = True,
    runner: SuiteRunner | None = None, config: ValidationConfig | None = None,
) -> DownloadResult:
    """Bring the lake's ``symbol``/``timeframe`` candles up to date over ``[since, until)``.

    Only the ranges each exchange's partition lacks are requested (a rerun fetches nothing new
    or just the bars closed since); the new bars are validated by the OHLCV suite (coverage
    measured against the requested ranges) and appended unless critical row rules fail.
    """
    msym = market_symbol(symbol, market or downloader.markets.get(symbol, "spot"))
    start, end = to_utc(since), downloader.closed_until(until, timeframe)

    def missing(ex_id: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        return lake.missing_ranges(ex_id, msym, timeframe, start, end) if start < end else []

    batch = downloader.fetch_ohlcv(symbol, timeframe, start, end, market=market,
                                   exchanges=exchanges, fallback=fallback, ranges_for=missing)
    reports, rejected, seconds = _validate_batch(batch, "ohlcv", timeframe, downloader.sink,
                                                 runner, config)
    result = DownloadResult(batch, reports, rejected=rejected, validation_s=seconds)
    if batch.exchange and not rejected and not batch.frame.empty:
        appended = lake.append(batch.frame, batch.exchange, msym, timeframe)
        result.stored = appended.written
        result.location = str(appended.path.parent if appended.path else
                              lake.partition(batch.exchange, msym, timeframe))
    return result


def download_derivatives(
    downloader: Downloader, engine: Any, kind: Literal["funding", "open_interest"],
    symbol: str, since: pd.Timestamp | str, until: pd.Timestamp | str | None = None, *,
    timeframe: str = "1h", exchanges: Sequence[str] | None = None, fallback: bool = True,
    runner: SuiteRunner | None = None, config: ValidationConfig | None = None,
) -> DownloadResult:
    """Download funding rates or open interest of ``symbol``'s USDT perpetual into the brain
    store (``engine``, schema at head), starting after the newest row stored for that exchange.

    Rows go through :func:`huracan.data.ingest.prepare_frame` (row rules, natural-key dedupe) and
    :func:`huracan.data.ingest.load_batch` (one transaction with their quality-log entries).
    """
    from sqlalchemy import func, select

    from huracan.data.ingest import load_batch, prepare_frame
    from huracan.db.tables import FundingRate, OpenInterest

    model: Any = FundingRate if kind == "funding" else OpenInterest
    pair = pair_of(market_symbol(symbol, "perp"))
    start = to_utc(since)

    def missing(ex_id: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        with engine.connect() as conn:
            newest = conn.execute(select(func.max(model.timestamp)).where(
                model.exchange == ex_id, model.symbol == pair)).scalar_one()
        first = start if newest is None else max(start, pd.Timestamp(newest) + pd.Timedelta(
            1, "ms"))
        end = (to_utc(until) if until is not None else downloader.now()) if kind == "funding" \
            else downloader.closed_until(until, timeframe)
        return [(first, end)] if first < end else []

    if kind == "funding":
        batch = downloader.fetch_funding(symbol, start, until, exchanges=exchanges,
                                         fallback=fallback, ranges_for=missing)
        suite, tf = "funding", None
    else:
        batch = downloader.fetch_open_interest(symbol, timeframe, start, until,
                                               exchanges=exchanges, fallback=fallback,
                                               ranges_for=missing)
        suite, tf = "open-interest", timeframe
    reports, rejected, seconds = _validate_batch(batch, suite, tf, downloader.sink, runner,
                                                 config)
    result = DownloadResult(batch, reports, rejected=rejected, validation_s=seconds)
    if batch.exchange and not rejected and not batch.frame.empty:
        frame = batch.frame
        if kind == "open_interest":
            frame = frame.dropna(axis=1, how="all")  # e.g. Bybit gives no USD value
        prepared = prepare_frame("funding" if kind == "funding" else "open-interest", frame,
                                 batch.source, exchange=batch.exchange, symbol=pair)
        report = load_batch(engine, prepared)
        result.stored = report.inserted + report.updated
        result.location = report.table
    return result


def make_downloader(sink: QualitySink | None) -> Downloader:
    """The Downloader the ``huracan download`` commands and the nightly's download step use, from
    :data:`DEFAULT_EXCHANGES` (tests replace this function to stub the exchanges)."""
    return Downloader(DEFAULT_EXCHANGES, factory=make_exchange, sink=sink)
