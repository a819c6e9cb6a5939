"""``huracan paper replay SYMBOL --start --end``: the paper loop over stored bars, offline and
deterministic (:func:`huracan.paper.loop.replay`).

Candles come from ``--data FILE`` (OHLCV Parquet/CSV, validated as training files are,
:func:`huracan.data.ohlcv.load_ohlcv`) or from the candle lake (``--lake`` / ``$HURACAN_LAKE``,
default ``data/lake``; ``--exchange binance``). Production is the registered model
``huracan-<SYMBOL>-<tf>`` at ``@production`` (or ``--version N``), answered in process; its
run's ``backtest`` settings are the execution. The ledger lives in the brain store
(``--db-url`` / ``$HURACAN_DB_URL``, migrated to head first) under the account
``replay-<SYMBOL>-<tf>-<start>-<end>`` (or ``--account``). Rerunning continues where an
interrupted replay stopped and writes nothing twice.

Exit codes: 0 replayed; 1 nothing to replay with (no production model or version, a brain
store or registry failure, ``fill=delay``); 2 unusable input (bad times, a data file breaking a
rule, candles not covering the request, an account of another symbol).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from huracan.cli.db import DbUrl, _engine, _fail
from huracan.cli.registry import TrackingUri

LAKE_ENV, DEFAULT_LAKE = "HURACAN_LAKE", "data/lake"


def _candles(symbol: str, timeframe: str, data: Path | None, lake: Path | None, exchange: str,
             start: Any, end: Any) -> tuple[Any, str | None]:
    """``(candles, inputs_path)`` from the file or the lake (bars ``start <= t < end``)."""
    from huracan.data.lake import CandleLake
    from huracan.data.ohlcv import DataValidationError, load_ohlcv

    if data is not None:
        try:
            candles, _ = load_ohlcv(data, timeframe, symbol=symbol)
        except DataValidationError as exc:
            raise _fail(str(exc), 2) from None
        return candles, None
    store = CandleLake(lake or Path(DEFAULT_LAKE))
    candles = store.read(exchange, symbol, timeframe, start=start, end=end)
    if len(candles) == 0:
        raise _fail(f"the lake at {store.root} holds no {exchange} {symbol} {timeframe} bars "
                    f"in [{start}, {end}): import or download them, or pass --data FILE", 2)
    return candles, str(store.partition(exchange, symbol, timeframe))


def _summary(result: Any, spec: Any, ledger: Any, seconds: float) -> dict[str, Any]:
    from huracan.paper.ledger import paper_result

    out: dict[str, Any] = {
        "account": spec.account, "symbol": spec.symbol, "timeframe": spec.timeframe,
        "production": spec.production, "anchor": str(spec.anchor), "bars": result.bars,
        "decided": result.decided, "skipped": result.skipped, "marks": result.marks,
        "resumed_after": None if result.resumed_after is None else str(result.resumed_after),
        "seconds": round(seconds, 3), "answer_seconds": round(result.answer_seconds, 3)}
    try:
        res = paper_result(ledger, spec.account)
    except ValueError:
        out.update(trades=0, net_return=None, sharpe=None, marked_bars=0)
        return out
    finite = [None if not math.isfinite(x) else float(x)
              for x in (res.metrics.total_return, res.metrics.sharpe)]
    out.update(trades=len(res.trades), net_return=finite[0], sharpe=finite[1],
               marked_bars=len(res.returns))
    return out


def _print(s: dict[str, Any]) -> None:
    resumed = f" (resumed after {s['resumed_after']})" if s["resumed_after"] else ""
    typer.echo(f"paper replay {s['account']}: {s['bars']} bar(s) stepped{resumed}, "
               f"{s['decided']} decided, {s['skipped']} skipped, {s['marks']} marked "
               f"in {s['seconds']:.2f} s")
    net = "n/a" if s["net_return"] is None else f"{s['net_return']:+.4%}"
    sharpe = "n/a" if s["sharpe"] is None else f"{s['sharpe']:.2f}"
    typer.echo(f"  account total: {s['marked_bars']} marked bar(s), {s['trades']} trade(s), "
               f"net return {net}, Sharpe {sharpe}")


def replay_command(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT.", show_default=False)],
    start: Annotated[str, typer.Option(help="First bar decided (UTC, e.g. 2019-05-01).",
                                       show_default=False)],
    end: Annotated[str, typer.Option(help="Bars opening before this time (UTC).",
                                     show_default=False)],
    timeframe: Annotated[str, typer.Option(help="Bar size of the registered model.")] = "1h",
    data: Annotated[Path | None, typer.Option(
        help="OHLCV Parquet/CSV file with the candles (default: the lake).",
        show_default=False)] = None,
    lake: Annotated[Path | None, typer.Option(
        envvar=LAKE_ENV, help=f"Parquet lake directory (default: {DEFAULT_LAKE}).",
        show_default=False)] = None,
    exchange: Annotated[str, typer.Option(help="Exchange of the lake series.")] = "binance",
    account: Annotated[str | None, typer.Option(
        help="Account name (default replay-<SYMBOL>-<tf>-<start>-<end>).",
        show_default=False)] = None,
    version: Annotated[int | None, typer.Option(
        help="Replay this registered version (default: the production alias).",
        show_default=False)] = None,
    chunk: Annotated[int, typer.Option(min=1, help="Bars per transaction.")] = 2000,
    tracking_uri: TrackingUri = None,
    db_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replay production over stored bars through the paper loop (orders, fills, marks and the
    prediction log in the brain store); prints bars, decisions, trades, net return, Sharpe."""
    from huracan.cli.registry import _client
    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.db import migrate
    from huracan.paper import loop
    from huracan.paper.ledger import AccountSpec, PaperLedger, account_name
    from huracan.paper.production import RegisteredProduction
    from huracan.registry.promotion import registered_model_name
    from huracan.serving.raw import InputRuleError
    from huracan.timeutil import to_utc

    began = time.perf_counter()
    try:
        step = timeframe_to_timedelta(timeframe)
        t0, t1 = to_utc(start, "--start").ceil(step), to_utc(end, "--end")
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if t1 <= t0:
        raise _fail(f"--end {t1} must be after --start {t0}", 2)
    name = registered_model_name(symbol, timeframe)
    try:
        production = RegisteredProduction(_client(tracking_uri), name, version=version)
        execution = loop.execution_settings(production.settings.backtest, symbol, timeframe)
        loop.execution_config(execution)
    except (LookupError, ValueError) as exc:
        raise _fail(str(exc).strip("'\""), 1) from None
    first = t0 - production.warmup_bars * step
    candles, inputs_path = _candles(symbol, timeframe, data, lake, exchange, first, t1)
    spec = AccountSpec(account=account or account_name(symbol, timeframe, "replay", t0, t1),
                       symbol=symbol, timeframe=timeframe, mode="replay", model_name=name,
                       production=production.label, anchor=t0, execution=execution)
    with _engine(db_url) as engine:
        migrate.upgrade(engine)
        ledger = PaperLedger(engine)
        stored = ledger.account(spec.account)
        if stored is not None and (stored.symbol, stored.timeframe, stored.mode) != \
                (symbol, timeframe, "replay"):
            raise _fail(f"account {spec.account!r} holds {stored.mode} {stored.symbol} "
                        f"{stored.timeframe}: pick another --account", 2)
        funding = loop.load_funding(engine, execution, symbol, first, t1 + step)
        try:
            result = loop.replay(engine, production, spec, candles, chunk=chunk, end=t1,
                                 funding=funding, inputs_path=inputs_path)
        except (ValueError, InputRuleError) as exc:
            raise _fail(str(exc).splitlines()[0], 2) from None
        summary = _summary(result, ledger.require(spec.account), ledger,
                           time.perf_counter() - began)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print(summary)


if __name__ == "__main__":  # = `huracan paper replay`; without SYMBOL: usage, exit 2
    typer.run(replay_command)
