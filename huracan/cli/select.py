"""``huracan select SYMBOL --timeframe 1h [--at TIME] [--json] [--rank-by METRIC]``: the model that
should trade SYMBOL now (:func:`huracan.regime.live.select`).

With ``HURACAN_PREDICTION_LOG`` on, the answer is recorded in the prediction log (source
``select``; :mod:`huracan.serving.prediction_log`).

Exit codes: 0 answered, 1 nothing to select (no registered model, production version or
detector), 2 unusable input (bad time, data file breaking a rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from huracan.cli.db import DbUrl, _fail
from huracan.cli.registry import TrackingUri, _client
from huracan.settings import SelectionSettings


def select_command(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT.", show_default=False)],
    timeframe: Annotated[str, typer.Option(help="Bar size of the registered model.")] = "1h",
    at: Annotated[str | None, typer.Option(help="Classify the last bar closed at or before this "
                                           "UTC time (default: the data's last bar).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    rank_by: Annotated[str | None, typer.Option(
        "--rank-by", help="Pick the version with the best value of this logged metric "
                          "(max_drawdown: lowest; others: highest) in the current regime.")] = None,
    lowest: Annotated[bool | None, typer.Option(
        "--lowest/--highest", show_default=False,
        help="Direction of --rank-by (default by metric).")] = None,
    min_trades: Annotated[int, typer.Option(help="Trades a version needs in the regime for its "
                                            "per-regime value to count.")
                          ] = SelectionSettings.min_trades,
    data: Annotated[Path | None, typer.Option(help="OHLCV file with the newest candles (default: "
                                              "the file the model's run trained on).")] = None,
    tracking_uri: TrackingUri = None,
    db_url: DbUrl = None,
) -> None:
    """Which model should trade SYMBOL now: regime, model version and why, exposure.

    Prints the current regime (with its filtered probability for hmm), the chosen model version
    and why (evidence in that regime or the fallback mapping), the exposure factor and the data's
    last bar; in a regime where no model beat cash: ``cash``, position 0, and why (the
    candidate's net return and PSR on that regime's bars)."""
    import pandas as pd

    from huracan.data.ohlcv import DataValidationError
    from huracan.db.session import make_engine
    from huracan.regime.live import SelectionError, select

    if at is not None:
        try:
            pd.Timestamp(at)
        except ValueError:
            raise _fail(f"--at {at!r} is not a time (e.g. 2024-06-01T12:00)", 2) from None
    client = _client(tracking_uri)
    engine = make_engine(db_url) if db_url else None
    try:
        answer = select(symbol, timeframe, at, client=client, engine=engine, data=data,
                        rank_by=rank_by, lowest=lowest, min_trades=min_trades)
    except SelectionError as exc:
        raise _fail(str(exc), 1) from None
    except (DataValidationError, FileNotFoundError) as exc:
        raise _fail(str(exc), 2) from None
    finally:
        if engine is not None:
            engine.dispose()
    _log_answer(symbol, timeframe, answer)
    typer.echo(json.dumps(answer.as_dict(), indent=2) if as_json else answer.describe())


def _log_answer(symbol: str, timeframe: str, answer: Any) -> None:
    """Record the selection in the prediction log (source ``select``: the regime, the chosen
    version and run, position 0 in a cash regime; no forecast; its inputs = the candles the
    regime was classified from) when ``HURACAN_PREDICTION_LOG`` is on. Never fails the
    command."""
    if answer.inputs is None or answer.last_bar == "-":
        return
    from huracan.serving.prediction_log import log_now

    log_now({"timestamp": answer.last_bar, "forecast": None, "regime": answer.regime,
             "position": answer.position, "size": None, "leverage": None, "sizer": None,
             "registered_model": answer.registered_model, "model_version": answer.version,
             "run_id": answer.run_id},
            source="select", symbol=symbol, timeframe=timeframe, candles=answer.inputs)


if __name__ == "__main__":  # = `huracan select`; without SYMBOL: usage, exit 2
    typer.run(select_command)
