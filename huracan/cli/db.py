"""``huracan db ...`` and ``huracan ingest ...``: the brain store's operations commands.

The database comes from ``--db-url`` or ``HURACAN_DB_URL`` (default ``sqlite:///huracan.db``);
it is only ever printed with its password masked. Exit codes: 0 success (rows may still have been
rejected: they are listed and logged in ``data_quality_logs``), 1 database error or schema not
current, 2 unusable input file or URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from huracan.data.cascades import CascadeRule
from huracan.data.ingest import IngestReport, ingest_file
from huracan.data.ohlcv import DataValidationError
from huracan.db import migrate
from huracan.db.session import DatabaseURLError, make_engine, resolve_url, safe_url
from huracan.secrets import mask_url

db_app = typer.Typer(help="Brain-store schema: migrate and inspect.", no_args_is_help=True)
ingest_app = typer.Typer(help="Load derivatives and sentiment files into the brain store "
                         "(idempotent upserts; bad rows rejected and logged).",
                         no_args_is_help=True)

DbUrl = Annotated[str | None, typer.Option(
    "--db-url", envvar="HURACAN_DB_URL", show_default=False,
    help="SQLAlchemy URL of the brain store (default sqlite:///huracan.db).")]
Exchange = Annotated[str | None, typer.Option(
    help="Exchange of the rows (e.g. binance) for files without an 'exchange' column; "
         "default: from the file name.")]
Symbol = Annotated[str | None, typer.Option(
    help="Symbol (e.g. BTC/USDT) for files holding one symbol without a 'symbol' column; "
         "default: from the file name.")]
FileArg = Annotated[Path, typer.Argument(help="Parquet or CSV file.", show_default=False)]
CascadeWindow = Annotated[str | None, typer.Option(
    "--cascade-window", show_default=False,
    help="Cascade rule: window length (e.g. 5min, 300s); default 5min or "
         "$HURACAN_CASCADE_WINDOW.")]
CascadeMinEvents = Annotated[int | None, typer.Option(
    "--cascade-min-events", show_default=False,
    help="Cascade rule: liquidations in the window that make a cascade; default 20 or "
         "$HURACAN_CASCADE_MIN_EVENTS.")]
CascadeMinUsd = Annotated[float | None, typer.Option(
    "--cascade-min-usd", show_default=False,
    help="Cascade rule: USD liquidated in the window that makes a cascade; default 250000 or "
         "$HURACAN_CASCADE_MIN_USD.")]
MAX_LISTED_REJECTIONS = 20


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {mask_url(message)}", err=True)
    return typer.Exit(code)


def _db_error(exc: SQLAlchemyError) -> str:
    """The first line of the driver's message (no SQL, no parameters), masked."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return mask_url(text[0] if text else type(exc).__name__)


@contextmanager
def _engine(db_url: str | None) -> Iterator[Engine]:
    """An Engine for the command, with every failure turned into a one-line masked error."""
    try:
        engine = make_engine(db_url)
    except DatabaseURLError as exc:
        raise _fail(str(exc), 2) from None
    try:
        yield engine
    except SQLAlchemyError as exc:
        behind = migrate.schema_behind(engine, exc)  # a missing table: say to upgrade
        if behind is not None:
            raise _fail(str(behind), 1) from None
        raise _fail(f"database {safe_url(resolve_url(db_url))}: {_db_error(exc)}", 1) from None
    except migrate.SchemaNotCurrentError as exc:
        raise _fail(str(exc), 1) from None
    except DataValidationError as exc:
        raise _fail(str(exc), 2) from None
    finally:
        engine.dispose()


@db_app.command()
def upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    db_url: DbUrl = None,
) -> None:
    """Create or migrate the schema (Alembic upgrade; running it again changes nothing)."""
    with _engine(db_url) as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
    change = "already at" if before == after else f"{before or 'empty'} ->"
    typer.echo(f"{safe_url(resolve_url(db_url))}: {change} {after}")


@db_app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision ('base' drops every "
                                            "brain-store table and its data).")],
    db_url: DbUrl = None,
) -> None:
    """Migrate the schema down to REVISION."""
    with _engine(db_url) as engine:
        migrate.downgrade(engine, revision)
        after = migrate.current_revision(engine)
    typer.echo(f"{safe_url(resolve_url(db_url))}: at {after or 'base (empty)'}")


@db_app.command()
def current(db_url: DbUrl = None) -> None:
    """Print the schema revision of the database and the newest one shipped."""
    with _engine(db_url) as engine:
        rev = migrate.current_revision(engine)
    typer.echo(f"{safe_url(resolve_url(db_url))}: {rev or 'none (run `huracan db upgrade`)'} "
               f"(head {migrate.head_revision()})")


def cascade_rule(window: str | None, min_events: int | None, min_usd: float | None
                 ) -> CascadeRule:
    """The cascade rule of a command: the environment's (or built-in) rule with the options
    given on the command line; an invalid one exits with code 2."""
    try:
        return CascadeRule.from_env().replace(window=window, min_events=min_events,
                                              min_usd=min_usd)
    except ValueError as exc:
        raise _fail(f"cascade rule: {exc}", 2) from None


def _run_ingest(kind: str, file: Path, db_url: str | None, *,
                cascade: CascadeRule | None = None, **kwargs: str | None) -> None:
    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        report = ingest_file(engine, kind, file, cascade_rule=cascade, **kwargs)
    _print_report(report)


def _print_report(report: IngestReport) -> None:
    typer.echo(report.summary())
    if report.partitions_created:
        typer.echo(f"created partitions: {', '.join(report.partitions_created)}")
    for rejection in report.rejections[:MAX_LISTED_REJECTIONS]:
        typer.echo(f"rejected {rejection}", err=True)
    if report.rejected > MAX_LISTED_REJECTIONS:
        typer.echo(f"... and {report.rejected - MAX_LISTED_REJECTIONS} more rejected rows "
                   "(all are in data_quality_logs)", err=True)


@ingest_app.command()
def funding(file: FileArg, exchange: Exchange = None, symbol: Symbol = None,
            db_url: DbUrl = None) -> None:
    """Funding rates: columns timestamp, funding_rate (fraction per interval)."""
    _run_ingest("funding", file, db_url, exchange=exchange, symbol=symbol)


@ingest_app.command("open-interest")
def open_interest(file: FileArg, exchange: Exchange = None, symbol: Symbol = None,
                  db_url: DbUrl = None) -> None:
    """Open interest: columns timestamp and open_interest and/or open_interest_usd."""
    _run_ingest("open-interest", file, db_url, exchange=exchange, symbol=symbol)


@ingest_app.command()
def liquidations(file: FileArg, exchange: Exchange = None, symbol: Symbol = None,
                 db_url: DbUrl = None, cascade_window: CascadeWindow = None,
                 cascade_min_events: CascadeMinEvents = None,
                 cascade_min_usd: CascadeMinUsd = None) -> None:
    """Liquidation events: timestamp, symbol, side (BUY/SELL or long/short), price, quantity.
    Without a liquidation_type column, each event is labelled cascade/single by the cascade
    rule (huracan.data.cascades)."""
    rule = cascade_rule(cascade_window, cascade_min_events, cascade_min_usd)
    _run_ingest("liquidations", file, db_url, exchange=exchange, symbol=symbol, cascade=rule)


@ingest_app.command()
def sentiment(
    file: FileArg,
    symbol: Symbol = None,
    source: Annotated[str | None, typer.Option(
        help="Source of the scores for files without a 'source' column.")] = None,
    db_url: DbUrl = None,
) -> None:
    """Sentiment scores: columns timestamp, symbol, source, score (in [-1, 1]), n_items; or a
    daily Crypto Fear & Greed file (timestamp, value 0-100): stored as score (value - 50) / 50,
    source alternative.me:fear-greed, under SYMBOL (default BTC/USDT)."""
    _run_ingest("sentiment", file, db_url, symbol=symbol, sentiment_source=source)


@ingest_app.command()
def headlines(file: FileArg, symbol: Symbol = None, db_url: DbUrl = None) -> None:
    """Headlines (columns timestamp, text [, symbol]) scored with VADER and its crypto lexicon
    (surge, rally, bullish, bearish, liquidated...): the mean compound score per symbol and
    timestamp into sentiment_scores, source vader."""
    _run_ingest("headlines", file, db_url, symbol=symbol)


if __name__ == "__main__":  # = `huracan db|ingest`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app({"db": db_app, "ingest": ingest_app},
            help="Brain-store commands (also `huracan db|ingest`).")
