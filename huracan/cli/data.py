"""``huracan download|validate|quality``: the data commands (Typer sub-apps).

Mounted by :mod:`huracan.cli` as ``app.add_typer(download_app, name="download")`` (and
``validate``, ``quality``); each sub-app also runs on its own (``typer.testing.CliRunner``).

- ``download ohlcv|funding|open-interest --symbol BTC/USDT [--timeframe 1h] --since 2024-01-01
  [--exchange binance ...] [--no-fallback]``: fetch what is missing (candles -> the Parquet lake,
  ``--lake`` / ``$HURACAN_LAKE``, default ``data/lake``; funding and open interest -> the brain
  store), validate it, print a summary (rows fetched, validated, gaps, retries).
- ``validate ohlcv|funding|open-interest|liquidations FILE [--timeframe 1h]``: run the suite on a
  file and list every failing rule, one line each.
- ``quality report --since 1d``: the daily summary from ``data_quality_logs``; also sent through
  the notifier when one is configured (``HURACAN_ALERT_WEBHOOK`` or Telegram variables) or
  ``--notify`` is given.

The brain store comes from ``--db-url`` / ``HURACAN_DB_URL`` (default ``sqlite:///huracan.db``;
schema at head: ``huracan db upgrade``). ``validate`` writes findings to ``data_quality_logs``
only when a database is named.

Exit codes: 0 success (validation: no critical rule failed); 1 critical rules failed, the batch
is degraded, or the database refused; 2 unusable input (file, URL, option).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from huracan.data.lake import CandleLake
from huracan.data.ohlcv import DataValidationError, timeframe_to_timedelta
from huracan.data.quality import QualitySink
from huracan.data.sources import (
    DEFAULT_EXCHANGES,
    DownloadResult,
    Market,
    download_derivatives,
    download_ohlcv,
    make_downloader,
)
from huracan.data.validate import SuiteRunner, ValidationConfig, validate_file

DerivativeKind = Literal["funding", "open_interest"]
LAKE_ENV = "HURACAN_LAKE"
DEFAULT_LAKE = "data/lake"
MAX_LISTED = 20

download_app = typer.Typer(help="Download market data through ccxt (retry, fallback, "
                           "validation).", no_args_is_help=True)
validate_app = typer.Typer(help="Validate a data file with its Great Expectations suite.",
                           no_args_is_help=True)
quality_app = typer.Typer(help="Data-quality summaries from data_quality_logs.",
                          no_args_is_help=True)


def _quiet_quality_log() -> None:
    """Findings are printed by the commands; keep the data-quality logger from printing them a
    second time through Python's last-resort handler (only when nothing else is configured)."""
    logger = logging.getLogger("huracan.data_quality")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


@download_app.callback()
def _download() -> None:
    """Download market data through ccxt (retry, fallback, validation)."""
    _quiet_quality_log()


@validate_app.callback()
def _validate() -> None:
    """Validate a data file with its Great Expectations suite."""
    _quiet_quality_log()


@quality_app.callback()
def _quality() -> None:
    """Data-quality summaries from data_quality_logs."""
    _quiet_quality_log()


DbUrl = Annotated[str | None, typer.Option(
    "--db-url", envvar="HURACAN_DB_URL", show_default=False,
    help="SQLAlchemy URL of the brain store (default: sqlite:///huracan.db).")]
Symbol = Annotated[str, typer.Option(help="Pair, e.g. BTC/USDT (or a ccxt symbol such as "
                                     "BTC/USDT:USDT).")]
Since = Annotated[str, typer.Option(help="Start (UTC), e.g. 2024-01-01.")]
Until = Annotated[str | None, typer.Option(help="End, exclusive (UTC); default: now (the "
                                           "bar still forming is never stored).")]
Exchanges = Annotated[list[str] | None, typer.Option(
    "--exchange", help="Exchange to try first; repeat for an explicit order. The others of "
    f"{', '.join(DEFAULT_EXCHANGES)} follow unless --no-fallback.")]
Fallback = Annotated[bool, typer.Option("--fallback/--no-fallback",
                                        help="Fall back to the other exchanges.")]
Coverage = Annotated[float, typer.Option(min=0.0, max=1.0, help="Minimum fraction of the "
                                         "expected bars (below: critical, batch degraded).")]
FileArg = Annotated[Path, typer.Argument(help="Parquet or CSV file.", show_default=False)]
Timeframe = Annotated[str | None, typer.Option(help="Bar size for grid, gap and coverage "
                                               "checks (default: inferred).")]


def _fail(message: str, code: int) -> typer.Exit:
    from huracan.secrets import mask_url

    typer.echo(f"error: {mask_url(message)}", err=True)
    return typer.Exit(code)


@contextmanager
def _engine(db_url: str | None, *, require_schema: bool = True) -> Iterator[Engine]:
    from huracan.db import migrate
    from huracan.db.session import DatabaseURLError, make_engine, resolve_url, safe_url

    try:
        engine = make_engine(db_url)
    except DatabaseURLError as exc:
        raise _fail(str(exc), 2) from None
    try:
        if require_schema:
            migrate.require_current_schema(engine)
        yield engine
    except SQLAlchemyError as exc:
        behind = migrate.schema_behind(engine, exc)  # a missing table: say to upgrade
        if behind is not None:
            raise _fail(str(behind), 1) from None
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(exc).__name__])[0]
        raise _fail(f"database {safe_url(resolve_url(db_url))}: {first}", 1) from None
    except migrate.SchemaNotCurrentError as exc:
        raise _fail(str(exc), 1) from None
    finally:
        engine.dispose()


def _sink(engine: Engine) -> QualitySink:
    from huracan.data.quality_db import DbQualitySink

    return DbQualitySink(engine)


def _print_result(result: DownloadResult) -> None:
    for attempt in result.batch.attempts:
        if not attempt.ok:
            typer.echo(f"  {attempt.describe()}", err=True)
    shown = 0
    for report in result.reports:
        for line in report.lines():
            if shown < MAX_LISTED:
                typer.echo(f"  {line}")
            shown += 1
    if shown > MAX_LISTED:
        typer.echo(f"  ... and {shown - MAX_LISTED} more finding(s) (all in data_quality_logs)")
    typer.echo(result.summary())


def _timestamp(value: str, option: str) -> Any:
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise _fail(f"{option} {value!r} is not a date/time (e.g. 2024-01-01)", 2) from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _check_timeframe(timeframe: str | None) -> None:
    if timeframe is None:
        return
    try:
        timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


def _finish(result: DownloadResult) -> None:
    _print_result(result)
    if not result.ok:
        raise typer.Exit(1)


@download_app.command("ohlcv")
def download_ohlcv_cmd(
    symbol: Symbol,
    since: Since,
    timeframe: Annotated[str, typer.Option(help="Bar size, e.g. 1m, 5m, 1h, 1d.")] = "1h",
    until: Until = None,
    exchange: Exchanges = None,
    fallback: Fallback = True,
    market: Annotated[str | None, typer.Option(
        help="spot or perp (USDT perpetual) (default: the downloader's per-symbol mapping, "
             "else spot).", show_default=False)] = None,
    lake: Annotated[Path | None, typer.Option(
        envvar=LAKE_ENV, help=f"Parquet lake directory (default: {DEFAULT_LAKE}).",
        show_default=False)] = None,
    coverage_threshold: Coverage = 0.95,
    db_url: DbUrl = None,
) -> None:
    """Candles into the Parquet lake (only the bars it lacks), validated by the ohlcv suite."""
    _check_timeframe(timeframe)
    if market not in (None, "spot", "perp"):
        raise _fail(f"--market must be spot or perp, got {market!r}", 2)
    start, end = _timestamp(since, "--since"), until and _timestamp(until, "--until")
    with _engine(db_url) as engine:
        downloader = make_downloader(_sink(engine))
        step = timeframe_to_timedelta(timeframe)
        horizon = (end or downloader.now()) - start
        with typer.progressbar(length=max(int(horizon / step), 1),
                               label=f"{symbol} {timeframe}") as bar:
            downloader.progress = bar.update
            try:
                result = download_ohlcv(
                    downloader, CandleLake(lake or Path(DEFAULT_LAKE)), symbol, timeframe,
                    start, end, market=cast(Market | None, market),
                    exchanges=exchange, fallback=fallback,
                    config=ValidationConfig(coverage_threshold=coverage_threshold))
            except ValueError as exc:
                raise _fail(str(exc), 2) from None
    _finish(result)


def _derivatives(kind: str, symbol: str, since: str, until: str | None, timeframe: str,
                 exchange: list[str] | None, fallback: bool, coverage_threshold: float,
                 db_url: str | None) -> None:
    _check_timeframe(timeframe)
    start, end = _timestamp(since, "--since"), until and _timestamp(until, "--until")
    with _engine(db_url) as engine:
        downloader = make_downloader(_sink(engine))
        with typer.progressbar(length=1000, label=f"{symbol} {kind}") as bar:
            downloader.progress = bar.update
            try:
                result = download_derivatives(
                    downloader, engine, cast(DerivativeKind, kind), symbol, start, end,
                    timeframe=timeframe, exchanges=exchange, fallback=fallback,
                    config=ValidationConfig(coverage_threshold=coverage_threshold))
            except ValueError as exc:
                raise _fail(str(exc), 2) from None
    _finish(result)


@download_app.command("funding")
def download_funding_cmd(
    symbol: Symbol, since: Since, until: Until = None, exchange: Exchanges = None,
    fallback: Fallback = True, coverage_threshold: Coverage = 0.95, db_url: DbUrl = None,
) -> None:
    """Funding-rate history of the USDT perpetual into the brain store (funding_rates)."""
    _derivatives("funding", symbol, since, until, "1h", exchange, fallback, coverage_threshold,
                 db_url)


@download_app.command("open-interest")
def download_open_interest_cmd(
    symbol: Symbol, since: Since,
    timeframe: Annotated[str, typer.Option(help="Bucket size: 5m, 15m, 30m, 1h, 4h, 1d "
                                           "(Binance keeps 30 days).")] = "1h",
    until: Until = None, exchange: Exchanges = None, fallback: Fallback = True,
    coverage_threshold: Coverage = 0.95, db_url: DbUrl = None,
) -> None:
    """Open-interest history of the USDT perpetual into the brain store (open_interest)."""
    _derivatives("open_interest", symbol, since, until, timeframe, exchange, fallback,
                 coverage_threshold, db_url)


@download_app.command("liquidations")
def download_liquidations_cmd(
    exchange: Annotated[str, typer.Option(help="Stream to follow: binance (forceOrder) or "
                                          "bybit (allLiquidation).")] = "binance",
    symbol: Annotated[list[str] | None, typer.Option(
        help="ccxt perpetual symbol(s), e.g. BTC/USDT:USDT; default: every symbol (Binance's "
             "!forceOrder@arr).")] = None,
    duration: Annotated[float | None, typer.Option(
        help="Seconds to collect (default: until interrupted).")] = None,
    flush_seconds: Annotated[float, typer.Option(help="Write events this often.")] = 60.0,
    db_url: DbUrl = None,
) -> None:
    """Collect liquidations from the exchange's websocket stream into the brain store
    (liquidations), printing the 1-minute buckets seen. Opens a network connection."""
    import asyncio

    import ccxt

    from huracan.data.liquidations import LiquidationCollector, collect

    error: str | None = None
    with _engine(db_url) as engine:
        try:
            collector = LiquidationCollector(exchange, engine=engine, sink=_sink(engine),
                                             flush_seconds=flush_seconds)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
        try:
            asyncio.run(collect(collector, symbol or (), duration_s=duration))
        except ccxt.BaseError as exc:  # the stream ended for good; what came is stored
            error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            error = f"{type(exc).__name__}: {error}"
        except KeyboardInterrupt:  # pragma: no cover - interactive stop (events flushed)
            pass
    buckets = collector.buckets()
    stored = sum(f.inserted or 0 for f in collector.flushes)
    rejected = sum(f.rejected for f in collector.flushes)
    typer.echo(f"{exchange} liquidations: received {collector.received} event(s) in "
               f"{len(buckets)} symbol-minute bucket(s); stored {stored} new, rejected "
               f"{rejected}")
    if not buckets.empty:
        typer.echo(buckets.tail(MAX_LISTED).to_string(index=False))
    if error:
        raise _fail(f"{exchange} liquidation stream ended: {error}", 1)


def _run_validate(kind: str, file: Path, timeframe: str | None, symbol: str | None,
                  coverage_threshold: float, db_url: str | None) -> None:
    _check_timeframe(timeframe)
    config = ValidationConfig(coverage_threshold=coverage_threshold)

    def run(sink: QualitySink | None) -> Any:
        try:
            return validate_file(file, kind, timeframe=timeframe, symbol=symbol, config=config,
                                 sink=sink, runner=SuiteRunner())
        except DataValidationError as exc:
            raise _fail(str(exc), 2) from None

    if db_url:
        with _engine(db_url) as engine:
            report = run(_sink(engine))
    else:
        report = run(None)
    lines = report.lines()
    for line in lines[:MAX_LISTED]:
        typer.echo(line, err=line.endswith("critical]"))
    if len(lines) > MAX_LISTED:
        typer.echo(f"... and {len(lines) - MAX_LISTED} more finding(s)")
    typer.echo(report.summary())
    if not report.passed:
        typer.echo("failing rules: " + ", ".join(report.failed_rules), err=True)
        raise typer.Exit(1)


ValidateDb = Annotated[str | None, typer.Option(
    "--db-url", envvar="HURACAN_DB_URL", show_default=False,
    help="Also write every finding to this brain store's data_quality_logs.")]
Sym = Annotated[str | None, typer.Option(help="Symbol for the data-quality log.")]


@validate_app.command("ohlcv")
def validate_ohlcv_cmd(file: FileArg, timeframe: Timeframe = None, symbol: Sym = None,
                       coverage_threshold: Coverage = 0.95, db_url: ValidateDb = None) -> None:
    """Candles: columns timestamp (UTC, bar open), open, high, low, close, volume."""
    _run_validate("ohlcv", file, timeframe, symbol, coverage_threshold, db_url)


@validate_app.command("funding")
def validate_funding_cmd(file: FileArg, timeframe: Timeframe = None, symbol: Sym = None,
                         coverage_threshold: Coverage = 0.95, db_url: ValidateDb = None) -> None:
    """Funding rates: columns timestamp (settlement, UTC), funding_rate (fraction)."""
    _run_validate("funding", file, timeframe, symbol, coverage_threshold, db_url)


@validate_app.command("open-interest")
def validate_open_interest_cmd(file: FileArg, timeframe: Timeframe = None, symbol: Sym = None,
                               coverage_threshold: Coverage = 0.95,
                               db_url: ValidateDb = None) -> None:
    """Open interest: columns timestamp and open_interest and/or open_interest_usd."""
    _run_validate("open-interest", file, timeframe, symbol, coverage_threshold, db_url)


@validate_app.command("liquidations")
def validate_liquidations_cmd(file: FileArg, symbol: Sym = None,
                              db_url: ValidateDb = None) -> None:
    """Liquidation events: timestamp, symbol, side (long/short, or Binance BUY/SELL order
    side), price, quantity."""
    _run_validate("liquidations", file, None, symbol, 0.0, db_url)


@quality_app.command("report")
def quality_report_cmd(
    since: Annotated[str, typer.Option(help="Window start: 1d, 12h, 30m, 2w or a date.")] = "1d",
    until: Annotated[str | None, typer.Option(help="Window end (default now).")] = None,
    symbols: Annotated[str | None, typer.Option(
        help="Comma-separated symbols expected in the window (default: those downloaded in "
             "the 7 days before it).")] = None,
    notify: Annotated[bool | None, typer.Option(
        "--notify/--no-notify", show_default=False,
        help="Send the summary through the notifier (default: when one is configured).")] = None,
    db_url: DbUrl = None,
) -> None:
    """The daily summary: missing symbols, coverage gaps, retry failures, degraded batches."""
    from huracan.alerts import notifier_from_env
    from huracan.data.quality_report import build_report, parse_since, send

    try:
        start = parse_since(since)
        end = parse_since(until) if until else None
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    expected = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    with _engine(db_url) as engine:
        report = build_report(engine, start, end, expected_symbols=expected)
    for line in report.lines():
        typer.echo(line)
    configured = any(os.environ.get(v) for v in ("HURACAN_ALERT_WEBHOOK",
                                                  "HURACAN_TELEGRAM_TOKEN"))
    if notify or (notify is None and configured):
        alert = send(report, notifier_from_env())
        typer.echo(f"sent: {alert.text()}")


if __name__ == "__main__":  # = `huracan download|validate|quality`; no command: usage, exit 2
    from huracan.commands import run_app

    run_app({"download": download_app, "validate": validate_app, "quality": quality_app},
            help="Data commands (also `huracan download|validate|quality`).")
