"""``huracan paper run SYMBOL [--timeframe 1h] [--url URL]``: the live paper loop
(:func:`huracan.paper.live.run`).

Production is the registered model ``huracan-<SYMBOL>-<tf>@production`` loaded in process
(:class:`huracan.paper.production.RegisteredProduction`, reloaded when the alias moves), or with
``--url`` an MLflow scoring server (:class:`huracan.paper.http.HttpProduction`; its warm-up from
``--warmup-bars`` or probed). Either way the execution settings (the ``backtest`` group) are
those of the production version's training run (:func:`huracan.rebuild.run_settings`), so the
registry must be reachable at start.

Account: ``paper-<SYMBOLKEY>-<tf>`` (stored; a restart resumes it). ``--anchor`` (new accounts
only; default the open of the bar forming at start, so the first decision is at its close).
Candles: downloaded by the Downloader of ``huracan download`` (:func:`huracan.data.sources.
make_downloader`; ``--exchange`` first, then the others) into ``--lake`` / ``$HURACAN_LAKE``
(default ``data/lake``), validated, findings in ``data_quality_logs``. The loop's clock is the
Downloader's (the wall clock; tests replace ``make_downloader``), its waits the Downloader's
``sleep`` when that is not ``time.sleep``, else an interruptible wait.

Stores: ``--db-url`` / ``HURACAN_DB_URL`` (schema at head), ``--tracking-uri`` /
``MLFLOW_TRACKING_URI``. Stops on SIGTERM/SIGINT between bars, or after ``--max-bars`` bar steps.
Exit codes: 0 stopped cleanly; 1 no production model, store or registry error; 2 unusable
input (symbol, timeframe, time, URL, unknown registered model).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from huracan.cli.db import DbUrl, _engine, _fail
from huracan.cli.registry import TrackingUri, _client

LAKE_ENV = "HURACAN_LAKE"
DEFAULT_LAKE = "data/lake"


def _production(client: Any, name: str, url: str | None, warmup_bars: int | None
                ) -> tuple[Any, Any]:
    """``(production, settings of the production version's run)``.

    Raises:
        typer.Exit: 2 unknown registered model or bad URL; 1 no production version.
    """
    from mlflow.exceptions import MlflowException

    from huracan.cli.registry import _require_registered
    from huracan.paper.http import HttpProduction
    from huracan.paper.production import RegisteredProduction
    from huracan.rebuild import run_settings

    try:
        _require_registered(client, name)
    except MlflowException as exc:
        raise _fail(f"registry {client.tracking_uri}: {str(exc).splitlines()[0]}", 1) from None
    try:
        if url:
            try:
                http = HttpProduction(url, warmup_bars=warmup_bars)
            except ValueError as exc:
                raise _fail(str(exc), 2) from None
            mv = client.get_model_version_by_alias(name, "production")
            return http, run_settings(client, mv.run_id)
        registered = RegisteredProduction(client, name)
        return registered, registered.settings
    except (LookupError, MlflowException) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise _fail(f"no production model for {name}: {first}", 1) from None


def _anchor(value: str | None, timeframe: str, now: Any) -> Any:
    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.timeutil import to_utc

    bar = timeframe_to_timedelta(timeframe)
    if value is None:
        return now.floor(bar)
    try:
        ts = to_utc(value, "--anchor")
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if ts != ts.floor(bar):
        raise _fail(f"--anchor {value} is not a {timeframe} bar open time", 2)
    return ts


def run_command(
    symbol: Annotated[str, typer.Argument(help="Pair, e.g. BTC/USDT (BTC/USDT:USDT for the "
                                          "perpetual).", show_default=False)],
    timeframe: Annotated[str, typer.Option(help="Bar size of the registered model.")] = "1h",
    url: Annotated[str | None, typer.Option(
        help="Ask this MLflow scoring server (mlflow models serve) instead of loading the "
             "registered model.", show_default=False)] = None,
    warmup_bars: Annotated[int | None, typer.Option(
        min=0, help="With --url: bars sent before the anchor (default: asked from the "
                    "server's min_bars answer).", show_default=False)] = None,
    exchange: Annotated[list[str] | None, typer.Option(
        "--exchange", help="Exchange to try first; repeat for an order (the others follow).",
        show_default=False)] = None,
    lake: Annotated[Path | None, typer.Option(
        envvar=LAKE_ENV, help=f"Parquet lake directory (default: {DEFAULT_LAKE}).",
        show_default=False)] = None,
    anchor: Annotated[str | None, typer.Option(
        help="First bar asked (UTC open time) of a NEW account (default: the bar forming at "
             "start).", show_default=False)] = None,
    max_bars: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many bar steps (default: run until SIGTERM/SIGINT).",
        show_default=False)] = None,
    stale_after: Annotated[float | None, typer.Option(
        min=0.0, help="Seconds after a bar's close it may still be decided (default: half "
                      "a bar).", show_default=False)] = None,
    settle: Annotated[float, typer.Option(help="Seconds waited after a close before "
                                          "downloading.")] = 5.0,
    tracking_uri: TrackingUri = None,
    db_url: DbUrl = None,
) -> None:
    """Paper-trade SYMBOL live: at each bar close download the candles, ask production, fill
    its decision in the paper ledger (resumes the stored account after a restart)."""
    from huracan.data import sources
    from huracan.data.lake import CandleLake
    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.data.quality_db import DbQualitySink
    from huracan.db import migrate
    from huracan.paper import live
    from huracan.paper.ledger import AccountSpec, PaperLedger, account_name
    from huracan.paper.loop import execution_config, execution_settings
    from huracan.registry.promotion import registered_model_name

    try:
        timeframe_to_timedelta(timeframe)
        sources.market_symbol(symbol, "spot")
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    name = registered_model_name(symbol, timeframe)
    client = _client(tracking_uri)
    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        downloader = sources.make_downloader(DbQualitySink(engine))
        production, settings = _production(client, name, url, warmup_bars)
        execution = execution_settings(settings.backtest, symbol, timeframe)
        try:
            execution_config(execution)
        except ValueError as exc:
            raise _fail(str(exc), 1) from None
        account = account_name(symbol, timeframe)
        stored = PaperLedger(engine).account(account)
        start = _anchor(anchor, timeframe, downloader.now())
        if stored is not None and anchor is not None and stored.anchor != start:
            raise _fail(f"account {account} exists with anchor {stored.anchor}; --anchor "
                        f"{anchor} differs (a new anchor needs a new account)", 2)
        spec = AccountSpec(account=account, symbol=symbol, timeframe=timeframe, mode="live",
                           model_name=name, production=production.label, anchor=start,
                           execution=execution)
        sleep = None if downloader.sleep is time.sleep else downloader.sleep
        result = live.run(engine, CandleLake(lake or Path(DEFAULT_LAKE)), downloader,
                          production, spec, now=downloader.now, sleep=sleep,
                          max_bars=max_bars, stale_after=stale_after, settle_s=settle,
                          exchanges=exchange)
    typer.echo(f"{result.account}: {result.bars} bar(s): {result.decided} decided, "
               f"{result.skipped} skipped; {result.outages} exchange outage(s), "
               f"{result.production_errors} production error(s); stopped ({result.stopped})")
