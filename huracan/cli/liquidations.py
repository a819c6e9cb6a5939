"""``huracan liquidations cascades SYMBOL --since 7d``: the liquidation cascades in the brain store.

Mounted by :mod:`huracan.cli` as ``app.add_typer(liquidations_app, name="liquidations")``; runs
on its own too (``typer.testing.CliRunner``).

Cascades are found from the stored EVENTS with the rule of :mod:`huracan.data.cascades` (the
one the collector and the ingest label with; ``--window``/``--min-events``/``--min-usd`` or the
``HURACAN_CASCADE_*`` variables change it), not from the stored labels, so that the listing is
the same whichever batches the events came in. Events from one window before ``--since`` are
read so that a cascade under way at ``--since`` is seen whole (one whose start lies further back
is listed from there); a cascade is listed when it ends at or after ``--since``.

Exit codes: 0 (also when there is none), 1 database error or schema not current, 2 bad input.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import pandas as pd
import typer

from huracan.cli.db import DbUrl, _engine, _fail, cascade_rule
from huracan.data.cascades import CascadeRule, find_cascades
from huracan.data.ingest import normalize_symbol
from huracan.data.quality_report import parse_since
from huracan.db import migrate
from huracan.db.queries import liquidation_frame

liquidations_app = typer.Typer(help="Liquidations in the brain store: cascades.",
                               no_args_is_help=True)


@liquidations_app.callback()
def _liquidations() -> None:
    """Liquidations in the brain store: cascades."""


def _time(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def _rule_json(rule: CascadeRule) -> dict[str, Any]:
    return {"window_seconds": rule.window.total_seconds(), "min_events": rule.min_events,
            "min_usd": rule.min_usd}


@liquidations_app.command()
def cascades(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT (or BTCUSDT).",
                                          show_default=False)],
    since: Annotated[str, typer.Option(help="From: 7d, 12h, 30m or a date/time (UTC).")] = "7d",
    until: Annotated[str | None, typer.Option(
        help="Up to (exclusive): same forms as --since; default now.", show_default=False)
    ] = None,
    exchange: Annotated[str | None, typer.Option(
        help="Only this exchange (default: every exchange, each on its own).",
        show_default=False)] = None,
    window: Annotated[str | None, typer.Option(
        help="Cascade window (default 5min or $HURACAN_CASCADE_WINDOW).",
        show_default=False)] = None,
    min_events: Annotated[int | None, typer.Option(
        help="Liquidations in a window that make a cascade (default 20).",
        show_default=False)] = None,
    min_usd: Annotated[float | None, typer.Option(
        help="USD in a window that makes a cascade (default 250000).", show_default=False)
    ] = None,
    db_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the cascades of SYMBOL: start, end, events, USD and the dominant liquidated side."""
    rule = cascade_rule(window, min_events, min_usd)
    pair = normalize_symbol(symbol)
    if pair is None:
        raise _fail(f"symbol {symbol!r} is not BASE/QUOTE (e.g. BTC/USDT)", 2)
    now = pd.Timestamp.now(tz="UTC")
    try:
        start = parse_since(since, now)
        end = parse_since(until, now) if until else now
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if end <= start:
        raise _fail(f"--until {_time(end)} is not after --since {_time(start)}", 2)
    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        events = liquidation_frame(engine, pair, start - rule.window, end,
                                   exchange=exchange.lower() if exchange else None)
    found = find_cascades(events.assign(symbol=pair), rule)
    found = found.loc[found["end"] >= start].reset_index(drop=True) if len(found) else found
    if as_json:
        typer.echo(json.dumps({
            "symbol": pair, "since": start.isoformat(), "until": end.isoformat(),
            "rule": _rule_json(rule),
            "cascades": [{
                "exchange": r.exchange, "start": r.start.isoformat(), "end": r.end.isoformat(),
                "events": int(r.events), "usd": round(float(r.usd), 2),
                "long_usd": round(float(r.long_usd), 2),
                "short_usd": round(float(r.short_usd), 2), "dominant_side": r.dominant_side,
                "dominant_share": (None if pd.isna(r.dominant_share)
                                   else round(float(r.dominant_share), 4)),
            } for r in found.itertuples(index=False)]}, indent=2))
        return
    typer.echo(f"{pair}: {len(found)} cascade(s) from {_time(start)} to {_time(end)} UTC "
               f"({len(events)} liquidation(s) read; rule: {rule.describe()})")
    if found.empty:
        return
    typer.echo(f"{'start (UTC)':<24}{'end (UTC)':<24}{'exchange':<10}{'events':>7}"
               f"{'USD':>15}  dominant side")
    for r in found.itertuples(index=False):
        share = "" if pd.isna(r.dominant_share) else f" ({r.dominant_share:.0%})"
        typer.echo(f"{_time(r.start):<24}{_time(r.end):<24}{r.exchange:<10}{r.events:>7}"
                   f"{r.usd:>15,.0f}  {r.dominant_side}{share}")


if __name__ == "__main__":  # = `huracan liquidations`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app(liquidations_app)
