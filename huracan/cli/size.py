"""``huracan size SYMBOL --timeframe 1h [--json] [--policy P]``: the suggested size and leverage
for the latest bar (:func:`huracan.sizing.serve.suggest`).

With ``HURACAN_PREDICTION_LOG`` on, the answer is recorded in the prediction log (source
``size``; :mod:`huracan.serving.prediction_log`).

Exit codes: 0 answered, 1 nothing to size with (no production forecaster; PPO asked without a
sizer), 2 unusable input (unknown policy, a data file breaking a rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from huracan.cli.db import _fail
from huracan.cli.registry import TrackingUri, _client


def size_command(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT.", show_default=False)],
    timeframe: Annotated[str, typer.Option(help="Bar size of the registered models.")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    policy: Annotated[str | None, typer.Option(
        help="ppo, fixed, sign_rule, volatility_target, kelly or flat (default: the "
             "registry's choice).")] = None,
    bars: Annotated[int, typer.Option(help="Bars the policy is played over.")] = 720,
    data: Annotated[Path | None, typer.Option(help="OHLCV file with the newest candles (default: "
                                              "the forecaster's training file).")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Suggested position size and leverage for SYMBOL's latest bar.

    The production forecaster's forecast times the production sizer's size and leverage (or the
    best baseline on validation when no sizer is in production); size 0 when the sizer serves
    flat (nothing beat cash on its unseen bars), with the reason."""
    from huracan.data.ohlcv import DataValidationError
    from huracan.sizing.serve import suggest

    client = _client(tracking_uri)
    try:
        answer = suggest(symbol, timeframe, client=client, data=data, policy=policy, bars=bars)
    except LookupError as exc:
        raise _fail(str(exc).strip("'\""), 1) from None
    except (ValueError, DataValidationError, FileNotFoundError) as exc:
        raise _fail(str(exc), 2) from None
    _log_answer(symbol, timeframe, answer)
    typer.echo(json.dumps(answer.as_dict(), indent=2) if as_json else answer.describe())


def _log_answer(symbol: str, timeframe: str, answer: Any) -> None:
    """Record the suggestion in the prediction log (source ``size``; its inputs = the candles
    it was computed from) when ``HURACAN_PREDICTION_LOG`` is on; nothing for an answer
    without a bar (a cash forecaster). Never fails the command."""
    if answer.inputs is None or answer.last_bar == "-":
        return
    from huracan.registry.promotion import registered_model_name
    from huracan.serving.prediction_log import log_now

    sizer = answer.policy if answer.sizer_version is None else \
        f"{answer.policy} (sizer v{answer.sizer_version})"
    log_now({"timestamp": answer.last_bar, "forecast": answer.forecast, "regime": None,
             "position": answer.position, "size": answer.size, "leverage": answer.leverage,
             "sizer": sizer, "registered_model": registered_model_name(symbol, timeframe),
             "model_version": answer.forecaster_version, "run_id": None},
            source="size", symbol=symbol, timeframe=timeframe, candles=answer.inputs)


if __name__ == "__main__":  # = `huracan size`; without SYMBOL: usage, exit 2
    typer.run(size_command)
