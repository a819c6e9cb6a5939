"""What production did, read back for decisions: the paper ledger's realised result over a
window, the paper loop's liveness, and one MLflow monitoring run per day per account.

- :func:`live_account`: the live account of a symbol/timeframe (``paper-BTCUSDT-1h``).
- :func:`account_result`: the ledger's result of an account's marks
  (:func:`huracan.paper.ledger.paper_result`: the evaluation's trades and metrics, no new
  return arithmetic).
- :func:`window_result`: the account's result over a monitoring window when its marks cover it
  (``registry monitor``: at least ``min_share`` of the window's bars and ``min_bars``).
- :func:`liveness`: the last decision age of an account (newest ``paper_orders.decided_at`` or
  ``paper_accounts.heartbeat_at``) against a threshold (the nightly ``paper`` step).
- :func:`log_daily_run`: the day's monitoring run in MLflow (idempotent, found by tags).

Times are UTC aware; returns are fractions of equity; ages are seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select

from huracan.analysis.drift import MONITORING_EXPERIMENT, TAG  # the drift runs' experiment
from huracan.db.tables import PaperAccount, PaperOrder
from huracan.evaluation.backtest import BacktestResult
from huracan.paper.ledger import PaperLedger, account_name, paper_result
from huracan.timeutil import to_utc
from huracan.tracking.names import modern_names


def live_account(symbol: str, timeframe: str) -> str:
    """The live paper account of ``symbol``/``timeframe`` (``paper-BTCUSDT-1h``:
    :func:`huracan.paper.ledger.account_name`)."""
    return account_name(symbol, timeframe, "live")


def account_result(engine: Engine, account: str, start: Any = None, end: Any = None
                   ) -> BacktestResult:
    """:func:`huracan.paper.ledger.paper_result` of ``account``'s marks with
    ``start <= bar_time < end`` (either open).

    Raises:
        huracan.paper.ledger.UnknownAccountError: no such account.
        ValueError: no marks in the range.
    """
    return paper_result(PaperLedger(engine), account, start, end)


@dataclass(frozen=True)
class PaperWindow:
    """How the ledger covers a monitoring window: ``bars`` marked of the window's ``expected``
    scored bars; ``result`` (the marks' result) when it covers, else ``None`` and ``why``."""

    account: str
    bars: int
    expected: int
    result: BacktestResult | None
    why: str = ""

    @property
    def covers(self) -> bool:
        return self.result is not None

    def label(self) -> str:
        """``paper ledger (ACCOUNT, N bars)``: the source line of ``registry monitor``."""
        return f"paper ledger ({self.account}, {self.bars} bars)"


def window_result(engine: Engine, account: str, bar_times: pd.DatetimeIndex | pd.Series, *,
                  min_bars: int, min_share: float = 0.9, version: str | None = None
                  ) -> PaperWindow:
    """The account's marks on a monitoring window's scored bars (``bar_times``: open times, UTC,
    sorted): covers when at least ``min_share`` of them are marked and at least ``min_bars``;
    then ``result`` holds the ledger's result (:func:`huracan.paper.ledger.paper_result`) of
    the marks in ``[first, last]`` of ``bar_times``.

    ``version``: only what that production version did counts. The window then starts after
    the last bar an order of ANOTHER version decided (``paper_orders.model_version``), so a
    version promoted within the window is not judged on its predecessor's trades: its marks
    cover the window only once it has traded ``min_share`` of it itself.
    Reads only; a missing account or table row is "does not cover"."""
    times = pd.DatetimeIndex(pd.to_datetime(bar_times, utc=True))
    expected = len(times)
    if expected == 0:
        return PaperWindow(account, 0, 0, None, "the window has no scored bars")
    ledger = PaperLedger(engine)
    if ledger.account(account) is None:
        return PaperWindow(account, 0, expected, None, f"no paper account {account}")
    start, end = times[0], times[-1] + pd.Timedelta(seconds=1)  # ledger ranges exclude end
    note = ""
    if version is not None:
        orders = ledger.orders(account, start, end)
        other = orders[(orders["status"] == "decided")
                       & (orders["model_version"].astype(str) != str(version))]
        if len(other):
            start = pd.Timestamp(other["bar_time"].max()) + pd.Timedelta(seconds=1)
            note = f" of v{version} (another version decided until {start:%Y-%m-%d %H:%M})"
    frame = ledger.marks(account, start, end)
    n = int(pd.DatetimeIndex(frame["bar_time"]).isin(times).sum())
    need = max(int(min_bars), math.ceil(float(min_share) * expected - 1e-9))
    if n < need:
        return PaperWindow(account, n, expected, None,
                           f"{account} marks {n}{note} of the window's {expected} bars "
                           f"(< {100 * min_share:g} % or < {min_bars})")
    return PaperWindow(account, len(frame), expected, paper_result(ledger, account, start, end))


@dataclass(frozen=True)
class Liveness:
    """The paper loop's pulse: ``exists`` (the account row), ``last_decision`` (newest
    ``decided_at`` or ``heartbeat_at``, UTC, or ``None``), ``age_s`` (seconds since, NaN when
    none) against ``max_age_s``; ``stale`` when older or when nothing was ever decided."""

    account: str
    exists: bool
    last_decision: pd.Timestamp | None
    age_s: float
    max_age_s: float

    @property
    def stale(self) -> bool:
        return self.exists and not (self.age_s <= self.max_age_s)

    def line(self) -> str:
        if not self.exists:
            return f"no paper account {self.account}"
        if self.last_decision is None:
            return f"{self.account}: never decided (no order, no heartbeat)"
        state = "STALE" if self.stale else "alive"
        return (f"{self.account} {state}: last decision {self.last_decision:%Y-%m-%d %H:%M} "
                f"UTC, {self.age_s / 3600:.1f} h ago (max {self.max_age_s / 3600:g} h)")


def last_decision(engine: Engine, account: str, until: Any = None) -> pd.Timestamp | None:
    """The newest of ``account``'s ``paper_orders.decided_at`` and its ``heartbeat_at`` (UTC),
    at or before ``until`` when given; ``None`` when there is none."""
    q = select(func.max(PaperOrder.decided_at)).where(PaperOrder.account == account)
    if until is not None:
        q = q.where(PaperOrder.decided_at <= to_utc(until).to_pydatetime())
    with engine.connect() as conn:
        decided = conn.execute(q).scalar()
        beat = conn.execute(select(PaperAccount.heartbeat_at)
                            .where(PaperAccount.account == account)).scalar()
    stamps = [to_utc(x) for x in (decided, beat) if x is not None]
    if until is not None:
        stamps = [x for x in stamps if x <= to_utc(until)]
    return max(stamps) if stamps else None


def liveness(engine: Engine, account: str, max_age: str | pd.Timedelta,
             now: datetime | pd.Timestamp | None = None) -> Liveness:
    """:class:`Liveness` of ``account`` at ``now`` (default the wall clock) against ``max_age``
    (a duration, e.g. ``2h``)."""
    max_s = pd.Timedelta(max_age).total_seconds()
    if PaperLedger(engine).account(account) is None:
        return Liveness(account, False, None, math.nan, max_s)
    last = last_decision(engine, account)
    t = to_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    age = math.nan if last is None else (t - last).total_seconds()
    return Liveness(account, True, last, age, max_s)


def _day_metrics(result: BacktestResult | None, prefix: str) -> dict[str, float]:
    if result is None:
        return {f"{prefix}bars": 0.0}
    m = result.metrics
    return {f"{prefix}net_return": float(m.total_return), f"{prefix}sharpe": float(m.sharpe),
            f"{prefix}trades": float(m.n_trades), f"{prefix}max_drawdown": float(m.max_drawdown),
            f"{prefix}composite_score": float(m.composite_score),
            f"{prefix}bars": float(len(result.returns))}


def _orders_counts(engine: Engine, account: str, start: Any, end: Any) -> dict[str, float]:
    q = select(PaperOrder.status, func.count()).where(PaperOrder.account == account)
    if start is not None:
        q = q.where(PaperOrder.bar_time >= to_utc(start).to_pydatetime())
    if end is not None:
        q = q.where(PaperOrder.bar_time < to_utc(end).to_pydatetime())
    with engine.connect() as conn:
        counts = dict(conn.execute(q.group_by(PaperOrder.status)).all())
    return {"decided": float(counts.get("decided", 0)), "skipped": float(counts.get("skipped", 0))}


def _result_or_none(engine: Engine, account: str, start: Any, end: Any
                    ) -> BacktestResult | None:
    try:
        return account_result(engine, account, start, end)
    except (ValueError, LookupError):  # no marks in the range (or no account)
        return None


def daily_figures(engine: Engine, account: str, day: Any, now: Any = None) -> dict[str, float]:
    """The metrics of the daily run: ``day_*`` over the marks of ``day`` (UTC, 00:00 to the next
    00:00, exclusive), ``todate_*`` over every mark before the day's end, the day's ``decided`` /
    ``skipped`` orders and ``last_decision_age_s`` at ``now`` (default: the day's end; decisions
    after it are not counted)."""
    start = to_utc(pd.Timestamp(day).normalize() if pd.Timestamp(day).tzinfo
                   else pd.Timestamp(day).normalize().tz_localize("UTC"))
    end = start + pd.Timedelta(days=1)
    out = _day_metrics(_result_or_none(engine, account, start, end), "day_")
    out |= _day_metrics(_result_or_none(engine, account, None, end), "todate_")
    out |= {f"day_{k}": v for k, v in _orders_counts(engine, account, start, end).items()}
    out |= {f"todate_{k}": v for k, v in _orders_counts(engine, account, None, end).items()}
    t = to_utc(now) if now is not None else end
    last = last_decision(engine, account, until=t)
    out["last_decision_age_s"] = math.nan if last is None else (t - last).total_seconds()
    return out


def _backtest_side(client: Any, model_name: str) -> tuple[dict[str, str], dict[str, float]]:
    """Production's logged test metrics (``test_*`` of its run) as ``backtest_*`` metrics, and
    its name/version/run (run tags ``huracan.production_*``); empty when there is no
    production model."""
    from huracan.registry.cash import is_cash
    from huracan.registry.promotion import PRODUCTION, alias_version

    try:
        mv = alias_version(client, model_name, PRODUCTION)
    except Exception:  # no registered model: nothing to show beside the paper figures
        return {}, {}
    if mv is None:
        return {}, {}
    params = {"production_model": model_name, "production_version": str(mv.version),
              "production_run": str(mv.run_id or "")}
    if is_cash(mv) or not mv.run_id:
        return params | {"production_policy": "cash" if is_cash(mv) else "unknown"}, {}
    metrics = modern_names(client.get_run(mv.run_id).data.metrics)  # a past run's per-regime
    return params, {f"backtest_{k.removeprefix('test_')}": float(v) for k, v in metrics.items()
                    if k.startswith("test_")}  # test_<m>__regime_<r> is regime/<r>/test_<m>


def log_daily_run(client: Any, engine: Engine, account: str, day: Any, *,
                  now: Any = None, experiment_name: str = MONITORING_EXPERIMENT) -> str:
    """Log (or update) the monitoring run of ``account`` for ``day`` and return its id.

    One run per day per account, found by its tags (``huracan.role=paper``,
    ``huracan.paper_account``, ``huracan.paper_day=YYYY-MM-DD``): a second call for the same day
    updates the same run (metrics logged again at the same step overwrite the latest value).
    Run name ``<account>-<YYYY-MM-DD>``; metrics :func:`daily_figures` plus production's
    backtest (its run's ``test_*`` metrics as ``backtest_*``), so the UI shows backtest and
    paper side by side; params the account's symbol, timeframe, mode and anchor; tags
    ``huracan.production_model/_version/_run`` (production when the run was last updated).

    Raises:
        ValueError: no such account.
        mlflow.exceptions.MlflowException: the tracking store refuses.
    """
    from mlflow.entities import Metric, Param

    from huracan.analysis.drift import _monitoring_experiment

    spec = PaperLedger(engine).account(account)
    if spec is None:
        raise ValueError(f"no paper account {account!r}")
    ts = pd.Timestamp(day)
    day_s = f"{(ts.tz_convert('UTC') if ts.tzinfo else ts):%Y-%m-%d}"
    params, backtest = _backtest_side(client, spec.model_name)
    exp_id = _monitoring_experiment(client, experiment_name, params.get("production_run") or None)
    found = client.search_runs([exp_id], filter_string=(
        f"tags.`{TAG}role` = 'paper' and tags.`{TAG}paper_account` = '{account}' and "
        f"tags.`{TAG}paper_day` = '{day_s}'"), max_results=1)
    if found:
        run_id = str(found[0].info.run_id)
    else:
        run = client.create_run(exp_id, run_name=f"{account}-{day_s}", tags={
            f"{TAG}role": "paper", f"{TAG}paper_account": account, f"{TAG}paper_day": day_s,
            f"{TAG}monitored_model": spec.model_name, "symbol": spec.symbol,
            "timeframe": spec.timeframe})
        run_id = str(run.info.run_id)
    figures = daily_figures(engine, account, day_s, now)
    stamp = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    values = figures | backtest
    metrics = [Metric(k, float(v), stamp, 0) for k, v in values.items() if math.isfinite(v)]
    fixed = {"symbol": spec.symbol, "timeframe": spec.timeframe, "mode": spec.mode,
             "anchor": str(spec.anchor)}
    client.log_batch(run_id, metrics=metrics,
                     params=[] if found else [Param(k, v) for k, v in fixed.items()])
    for key, value in params.items():  # production may move during the day: tags, not params
        client.set_tag(run_id, f"{TAG}{key}", value)
    client.set_terminated(run_id, "FINISHED")
    return run_id
