"""``huracan lake import|list|compact``: the candle lake from the command line (Typer sub-app).

Mounted by :mod:`huracan.cli` as ``app.add_typer(lake_app, name="lake")``; also runs on its own
(``typer.testing.CliRunner``). The lake is ``--lake`` / ``$HURACAN_LAKE`` (default ``data/lake``),
as for ``huracan download ohlcv``.

- ``lake import FILE --exchange binance --symbol BTC/USDT --timeframe 1h [--allow-degraded]``:
  validate a Parquet/CSV candle file with the OHLCV suite and append the bars not stored yet
  (:func:`huracan.data.lake_import.import_candles`); prints rows read, written and skipped.
  Findings go to ``data_quality_logs`` when ``--db-url`` / ``$HURACAN_DB_URL`` names a store.
- ``lake list``: every series with its parts, rows and first/last bar.
- ``lake compact``: merge each series' parts into one file (crash-safe).

Exit codes (as the data commands): 0 success; 1 critical rules failed (nothing stored, one line
per failing rule on stderr) or the database refused; 2 unusable input (missing or unreadable
file, missing column, bad exchange/symbol/timeframe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from huracan.cli.data import (  # the data commands' shared option types and helpers
    DEFAULT_LAKE,
    LAKE_ENV,
    MAX_LISTED,
    Coverage,
    FileArg,
    ValidateDb,
    _engine,
    _fail,
    _quiet_quality_log,
    _sink,
)
from huracan.data.lake import CandleLake
from huracan.data.lake_import import ImportResult, import_candles
from huracan.data.quality import QualitySink
from huracan.data.validate import ValidationConfig

lake_app = typer.Typer(help="The Parquet candle lake: import files, list series, compact.",
                       no_args_is_help=True)

Lake = Annotated[Path | None, typer.Option(
    envvar=LAKE_ENV, help=f"Parquet lake directory (default: {DEFAULT_LAKE}).",
    show_default=False)]


@lake_app.callback()
def _lake() -> None:
    """The Parquet candle lake: import files, list series, compact."""
    _quiet_quality_log()


def _lake_of(lake: Path | None) -> CandleLake:
    return CandleLake(lake or Path(DEFAULT_LAKE))


@lake_app.command("import")
def import_cmd(
    file: FileArg,
    exchange: Annotated[str, typer.Option(help="Exchange id of the partition, e.g. binance.",
                                          show_default=False)],
    symbol: Annotated[str, typer.Option(help="ccxt symbol, e.g. BTC/USDT (spot) or "
                                        "BTC/USDT:USDT (perpetual).", show_default=False)],
    timeframe: Annotated[str, typer.Option(help="Bar size of the file, e.g. 1m, 1h, 1d.",
                                           show_default=False)],
    lake: Lake = None,
    allow_degraded: Annotated[bool, typer.Option(
        "--allow-degraded", help="Store even when critical rules fail (logged).")] = False,
    coverage_threshold: Coverage = 0.95,
    db_url: ValidateDb = None,
) -> None:
    """Validate a candle file (timestamp UTC bar open, open, high, low, close, volume) and add
    the bars the lake lacks."""
    store = _lake_of(lake)
    config = ValidationConfig(coverage_threshold=coverage_threshold)

    def run(sink: QualitySink | None) -> ImportResult:
        try:
            return import_candles(file, store, exchange, symbol, timeframe, sink=sink,
                                  allow_degraded=allow_degraded, config=config)
        except ValueError as exc:  # DataValidationError too: unusable file or option
            raise _fail(str(exc), 2) from None

    if db_url:
        with _engine(db_url) as engine:
            result = run(_sink(engine))
    else:
        result = run(None)
    report = result.report
    first: dict[str, str] = {}
    for issue in report.critical:
        first.setdefault(issue.issue_type, str(issue.details.get("message", issue.issue_type)))
    for line in first.values():
        typer.echo(line, err=True)
    others = [line for line in report.lines() if not line.endswith("critical]")]
    for line in others[:MAX_LISTED]:
        typer.echo(line)
    if len(others) > MAX_LISTED:
        typer.echo(f"... and {len(others) - MAX_LISTED} more finding(s)")
    typer.echo(report.summary())
    typer.echo(result.summary(), err=not result.stored)
    if not result.stored:
        raise typer.Exit(1)


@lake_app.command("list")
def list_cmd(lake: Lake = None) -> None:
    """Every stored series: exchange, symbol, timeframe, part files, rows, first and last bar
    (UTC open times)."""
    import pyarrow.parquet as pq

    store = _lake_of(lake)
    series = store.series()
    if not series:
        typer.echo(f"{store.root}: no candles stored")
        return
    rows = []
    for ex, sym, tf in series:
        parts = store.parts(ex, sym, tf)
        n = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        span = store.bounds(ex, sym, tf)
        first, last = (f"{span[0]:%Y-%m-%d %H:%M}", f"{span[1]:%Y-%m-%d %H:%M}") if span \
            else ("-", "-")
        rows.append((ex, sym, tf, str(len(parts)), str(n), first, last))
    header = ("exchange", "symbol", "timeframe", "parts", "rows", "first", "last")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@lake_app.command("compact")
def compact_cmd(lake: Lake = None) -> None:
    """Merge each series' part files into one (crash-safe: the merged file is in place before
    the old parts are deleted)."""
    store = _lake_of(lake)
    for ex, sym, tf in store.series():
        before = len(store.parts(ex, sym, tf))
        merged = store.compact(ex, sym, tf)
        typer.echo(f"{ex} {sym} {tf}: {before} part(s) -> "
                   f"{merged.name if merged else 'empty'}")


if __name__ == "__main__":  # = `huracan lake`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app(lake_app)
