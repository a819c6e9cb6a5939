"""``huracan paper compare SYMBOL``: the live paper account against the backtest of its bars,
the difference per source (:mod:`huracan.paper.compare`).

The backtest re-runs the live account's production (its ``production`` label, or ``--model``)
with the account's anchor and execution settings over TODAY's candles (``--data FILE``, else
the lake: ``--lake`` / ``$HURACAN_LAKE``, ``--exchange``) into a scratch replay account (a
temporary SQLite store); the brain store (``--db-url`` / ``$HURACAN_DB_URL``) is only read.

Exit codes: 0 compared (whether or not they agree), 1 nothing to compare (no such account, no
marks yet, or the registry has no such model), 2 unusable input (bad file, window, candles
not covering the request, fill=delay) or a store error (one line, masked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from huracan.cli.db import DbUrl, _engine, _fail
from huracan.cli.registry import TrackingUri, _client

Symbol = Annotated[str, typer.Argument(help="Market symbol, e.g. BTC/USDT.", show_default=False)]


def _production(client: Any, label: str, model_name: str) -> Any:
    """A :class:`~huracan.paper.production.RegisteredProduction` of ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``, ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME``; an HTTP label
    falls back to ``model_name@production`` (the registered model behind the endpoint)."""
    from huracan.paper.production import RegisteredProduction
    from huracan.registry.promotion import PRODUCTION

    text = label.removeprefix("models:/")
    if "://" in text:  # an HTTP endpoint: ask its registered model in process
        text = f"{model_name}@{PRODUCTION}"
    if "@" in text:
        name, alias = text.split("@", 1)
        return RegisteredProduction(client, name, alias=alias)
    if "/" in text:
        name, version = text.rsplit("/", 1)
        return RegisteredProduction(client, name, version=version)
    return RegisteredProduction(client, text)


def _candles(data: Path | None, lake: Path | None, exchange: str, symbol: str,
             timeframe: str) -> Any:
    """Today's candles: ``data`` (validated OHLCV file) or the lake's series."""
    if data is not None:
        from huracan.data.ohlcv import load_ohlcv

        frame, _ = load_ohlcv(data, timeframe, symbol=symbol)
        return frame
    from huracan.cli.data import DEFAULT_LAKE
    from huracan.data.lake import CandleLake

    store = CandleLake(lake or Path(DEFAULT_LAKE))
    frame = store.read(exchange, symbol, timeframe)
    if len(frame) == 0:
        raise ValueError(f"the lake {store.root} holds no {exchange} {symbol} {timeframe} "
                         "candles (give --data FILE or --lake/--exchange)")
    return frame


def compare_command(
    symbol: Symbol,
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Bar timeframe.")] = "1h",
    account: Annotated[str | None, typer.Option(
        "--account", show_default=False,
        help="Live paper account (default paper-<SYMBOLKEY>-<timeframe>).")] = None,
    start: Annotated[str | None, typer.Option(
        "--start", show_default=False, help="First bar compared (UTC if no zone).")] = None,
    end: Annotated[str | None, typer.Option(
        "--end", show_default=False, help="Last bar compared (inclusive; UTC if no zone).")]
    = None,
    data: Annotated[Path | None, typer.Option(
        "--data", show_default=False, help="OHLCV file with today's candles (default: the "
                                           "lake).")] = None,
    lake: Annotated[Path | None, typer.Option(
        "--lake", envvar="HURACAN_LAKE", show_default=False,
        help="Parquet candle lake (default data/lake).")] = None,
    exchange: Annotated[str, typer.Option(help="Exchange of the lake series.")] = "binance",
    model: Annotated[str | None, typer.Option(
        "--model", show_default=False,
        help="Production the backtest asks: NAME@ALIAS or NAME/VERSION (default: the live "
             "account's).")] = None,
    late_after: Annotated[str | None, typer.Option(
        "--late-after", show_default=False,
        help="A bar first seen this long after its close counts as late (default a quarter "
             "of the bar), e.g. 10min.")] = None,
    tracking_uri: TrackingUri = None,
    db_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")]
    = False,
) -> None:
    """Live paper trading against the backtest of the same bars: by how much they differ and
    why (data revised, late or missing bar, model version, fills and costs, unexplained)."""
    import pandas as pd

    from huracan.evaluation.execution import ExecutionInputError
    from huracan.paper.compare import NothingToCompareError, compare
    from huracan.paper.ledger import PaperLedger, account_name

    name = account or account_name(symbol, timeframe)
    try:
        late = None if late_after is None else pd.Timedelta(late_after)
    except ValueError:
        raise _fail(f"--late-after {late_after!r} is not a duration (e.g. 10min)", 2) from None
    with _engine(db_url) as engine:
        spec = PaperLedger(engine).account(name)
        if spec is None:
            raise _fail(f"no paper account {name!r} in the brain store: nothing to compare", 1)
        if len(PaperLedger(engine).marks(name)) == 0:
            raise _fail(f"paper account {name} has no marks yet: nothing to compare", 1)
        try:
            candles = _candles(data, lake, exchange, spec.symbol, spec.timeframe)
        except (ValueError, OSError) as exc:  # DataValidationError is a ValueError
            raise _fail(str(exc).splitlines()[0], 2) from None
        try:
            production = _production(_client(tracking_uri), model or spec.production,
                                     spec.model_name)
        except LookupError as exc:  # no such model, alias or version
            raise _fail(str(exc).splitlines()[0], 1) from None
        except ValueError as exc:  # a model that answers features, not candles
            raise _fail(str(exc).splitlines()[0], 2) from None
        try:
            result = compare(engine, production, name, candles, start=start, end=end,
                             late_after=late)
        except NothingToCompareError as exc:
            raise _fail(str(exc), 1) from None
        except (ExecutionInputError, ValueError) as exc:
            raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 2) \
                from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for line in result.lines():
            typer.echo(line)
