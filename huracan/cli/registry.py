"""``huracan registry ...``: inspect versions and decisions, roll back, monitor production.

MLflow store: ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` (default the local store
``sqlite:///mlruns/mlflow.db``). Brain store: ``--db-url`` or ``HURACAN_DB_URL`` (default
``sqlite:///huracan.db``). Exit codes: 0 done, 1 refused (production already cash, no production
version) or store error, 2 unusable input (a NAME the registry does not hold: one line naming the
registered models), 3 (``monitor``) no bars newer than production's training and validation data
yet, or (``--source paper``) no paper ledger covering the window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from huracan.alerts import notifier_from_env
from huracan.cli.db import DbUrl, _engine, _fail
from huracan.registry import events

registry_app = typer.Typer(help="Model registry: versions, decisions, rollback, monitoring.",
                           no_args_is_help=True)

TrackingUri = Annotated[str | None, typer.Option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_default=False,
    help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db).")]
Name = Annotated[str, typer.Argument(help="Registered model, e.g. huracan-BTCUSDT-1h.",
                                     show_default=False)]


def _client(tracking_uri: str | None) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    from huracan.tracking.run import default_tracking_uri

    uri = tracking_uri or default_tracking_uri(Path("mlruns"))
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _require_registered(client: Any, name: str) -> None:
    """Refuse a NAME the MLflow registry does not hold: one line naming the store and the
    registered models (at most 20), exit code 2. Reads only.

    Raises:
        typer.Exit: code 2 when ``name`` is not a registered model.
    """
    from mlflow.exceptions import MlflowException

    from huracan.secrets import mask_url

    try:
        client.get_registered_model(name)
        return
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    known = sorted(m.name for m in client.search_registered_models(max_results=1000))
    listed = ", ".join(known[:20]) + (f" (+{len(known) - 20} more)" if len(known) > 20 else "")
    raise _fail(f"no registered model {name!r} in {mask_url(str(client.tracking_uri))}; "
                f"registered: {listed or 'none'}", 2)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


@registry_app.command()
def history(name: Name, as_json: Annotated[bool, typer.Option("--json")] = False,
            db_url: DbUrl = None) -> None:
    """Every promotion, rejection and rollback of NAME, oldest first (a rollback to the cash
    policy shows its candidate as cash/<version>)."""
    with _engine(db_url) as engine:
        rows = events.history(engine, name)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        typer.echo(f"{name}: no registry events")
        return
    typer.echo(f"{'time':<33}{'event':<13}{'alias':<16}{'candidate':>10}{'champion':>10}{'cand_score':>12}"
               f"{'champ_score':>12}{'tol':>6}  reason")
    for r in rows:
        cand = r.candidate_version or "-"
        if (r.evidence or {}).get("to") == "cash":  # production went to the cash policy
            cand = f"cash/{cand}"
        typer.echo(f"{r.time:<33}{r.event:<13}{r.alias:<16}{cand:>10}"
                   f"{r.champion_version or '-':>10}{_fmt(r.candidate_score):>12}"
                   f"{_fmt(r.champion_score):>12}{_fmt(r.tolerance)[:5]:>6}  {r.reason}")


@registry_app.command()
def show(name: Name, tracking_uri: TrackingUri = None) -> None:
    """The production and staging versions of NAME with their manifests (JSON); a production
    that is the cash policy says "policy": "cash" and the reason."""
    from huracan.registry.promotion import describe

    client = _client(tracking_uri)
    _require_registered(client, name)
    typer.echo(json.dumps(describe(client, name), indent=2))


@registry_app.command()
def rollback(name: Name, reason: Annotated[str, typer.Option(help="Recorded with the event.")]
             = "manual rollback",
             to_cash: Annotated[bool, typer.Option(
                 "--to-cash", help="Go to the cash policy (position 0) instead of the previous "
                 "version.")] = False,
             tracking_uri: TrackingUri = None, db_url: DbUrl = None) -> None:
    """Move production of NAME back to the version that held it before; to cash (position 0)
    when there is none, or with --to-cash. Recorded (registry history) and alerted."""
    from huracan.evaluation.evidence import CASH
    from huracan.registry.promotion import RegistryError
    from huracan.registry.promotion import rollback as do_rollback

    client = _client(tracking_uri)
    _require_registered(client, name)
    with _engine(db_url) as engine:
        try:
            old, new = do_rollback(client, engine, name, reason=reason, to_cash=to_cash,
                                   notifier=notifier_from_env())
        except RegistryError as exc:
            raise _fail(str(exc), 1) from None
    if new == CASH:
        typer.echo(f"{name}: production v{old} -> cash (position 0): {reason}"
                   + ("" if to_cash else " (no earlier production version)"))
    else:
        typer.echo(f"{name}: production v{old} -> v{new} ({reason})")


def _window_bars(window: str, timeframe: str) -> int:
    """``720`` (bars) or a duration such as ``30d``/``72h`` converted to bars of ``timeframe``."""
    import pandas as pd

    from huracan.data.ohlcv import timeframe_to_timedelta

    if window.isdigit():
        return int(window)
    try:
        span = pd.Timedelta(window)
    except ValueError as exc:
        raise _fail(f"--window {window!r}: expected bars (720) or a duration (30d, 72h)",
                    2) from exc
    return int(span / timeframe_to_timedelta(timeframe))


def _monitor_drift(client: Any, name: str, prod: Any, data: Path | None, window: str,
                   share: float, workspace: Path | None, db_url: str | None) -> None:
    """The drift half of ``registry monitor``: check, print one line, and over threshold record
    a ``drift`` event in registry history (the report's run, the retrain request)."""
    from huracan.analysis.drift import check_drift_for_monitor

    with _engine(db_url) as engine:
        res = check_drift_for_monitor(client, engine, name, data_path=data, current=window,
                                      drift_share=share, workspace=workspace,
                                      notifier=notifier_from_env())
        if res.drifted and res.error is None:
            events.record(engine, event="drift", model_name=name,
                          candidate_version=prod.version, champion_version=None,
                          candidate_score=res.share, champion_score=None, tolerance=share,
                          metric="drift_share", run_id=res.report_run_id,
                          reason=(f"drift share {res.share:.2f} >= {share:g}: retrain requested"
                                  f" (request {res.retrain_request_id})"),
                          evidence={"drift_report_id": res.drift_report_id,
                                    "retrain_request_id": res.retrain_request_id,
                                    "drifted_features": list(res.drifted_features[:20]),
                                    "html": res.html_path})
    typer.echo(f"{name} v{prod.version}: {res.line()}")


def _monitor_rescale(client: Any, name: str, data: Path | None) -> None:
    """``--weekly-rescale``: the logged scaler refit when due; a failure is reported only."""
    from huracan.analysis.drift import rescale_due
    from huracan.analysis.drift import weekly_rescale as do_rescale

    if not rescale_due(client, name):
        typer.echo(f"{name}: scaler refit not due (last one within 7 days)")
        return
    try:
        res = do_rescale(client, name, data_path=data)
    except Exception as exc:  # the performance check must still run
        typer.echo(f"{name}: scaler refit failed: {type(exc).__name__}: {exc}"[:300])
        return
    typer.echo(f"{name} v{res.version}: scaler refit on {res.window_start} .. {res.window_end} "
               f"({res.rows} rows), largest mean shift {res.max_abs_mean_shift:.2f} sd; run "
               f"{res.run_id}")


def _paper_source(engine: Any, symbol: str, timeframe: str, scored: Any, source: str,
                  min_bars: int, version: str) -> tuple[Any, str]:
    """The live paper account's result on the window's scored bars when ``source`` is not
    ``backtest`` and its marks of production ``version``'s decisions cover them
    (:func:`huracan.paper.monitoring.window_result`), else ``None``; and a note on why not
    (empty when it covers or was not asked)."""
    if source == "backtest":
        return None, ""
    from huracan.paper.monitoring import live_account, window_result

    try:
        win = window_result(engine, live_account(symbol, timeframe), scored, min_bars=min_bars,
                            version=version)
    except Exception as exc:  # an unreadable ledger (old schema...): fall back, say why
        return None, f"paper ledger unreadable: {type(exc).__name__}: {exc}"[:300]
    return (win, "") if win.covers else (None, win.why)


@registry_app.command()
def monitor(
    name: Name,
    window: Annotated[str, typer.Option(help="Newest bars to score: a count (720) or a "
                                       "duration (30d).")] = "30d",
    data: Annotated[Path | None, typer.Option(help="OHLCV file with the newest data (default: "
                                              "the file the production run trained on).")] = None,
    metric: Annotated[str, typer.Option()] = "composite_score",
    tolerance: Annotated[float, typer.Option(help="Allowed relative degradation.")] = 0.05,
    min_bars: Annotated[int, typer.Option(help="Fewest unseen bars worth scoring.")] = 24,
    drift: Annotated[bool, typer.Option(help="Also run the Evidently drift check of the "
                                        "production model on the same window.")] = True,
    drift_share: Annotated[float, typer.Option(help="Share of drifted features that counts "
                                               "as drift (Evidently 0.7 leaves it to us).")] = 0.5,
    workspace: Annotated[Path | None, typer.Option(help="Evidently workspace (default beside "
                                                   "the MLflow store).")] = None,
    weekly_rescale: Annotated[bool, typer.Option(help="Refit the scaler on the newest "
                                                 "training-length window when the last refit is "
                                                 "older than 7 days; logged, model unchanged "
                                                 "(huracan drift rescale).")] = False,
    source: Annotated[str, typer.Option(
        "--source", help="Where production's current score comes from: paper (the live paper "
        "account's realised net returns, paper-<SYMBOL>-<tf>), backtest (re-score the model on "
        "the window) or auto (paper when its marks cover >= 90 % of the window's unseen bars "
        "and at least MIN_BARS, else backtest).")] = "auto",
    tracking_uri: TrackingUri = None,
    db_url: DbUrl = None,
) -> None:
    """Re-score production on the newest WINDOW of data, counting only bars after the last bar
    its model saw in training or validation; roll back if it degraded by more than TOLERANCE
    relative to its score at promotion (to cash when there is no earlier version). Exit code 3
    when fewer than MIN_BARS such bars exist. A production that is cash is not scored: it says
    so and exits 0.

    First (with --drift, the default) the drift check compares the model's inputs on WINDOW
    with its training window (huracan drift report): over DRIFT_SHARE it records a retrain
    request, a drift event in registry history (with the report's MLflow run) and an alert. A
    failed drift check is reported and alerted, and the performance check still runs.

    With --source auto (the default) or paper, production is judged on what it did: the live
    paper account's marks over the window's unseen bars (its realised net returns, scored by
    the evaluation's own metrics) when they cover at least 90 % of those bars and MIN_BARS;
    auto falls back to the backtest re-score otherwise, paper exits 3. The output line, the
    rollback reason and its registry event say which source was used."""
    from huracan.data.ohlcv import DataValidationError, bars_per_year
    from huracan.rebuild import rebuild_features, run_settings
    from huracan.registry.cash import cash_reason, is_cash
    from huracan.registry.evaluate import restrict_window, scored_bars, window_from_features
    from huracan.registry.promotion import PRODUCTION, alias_version, seen_until
    from huracan.stages import EVAL_CONTEXT_ROWS

    if source not in ("auto", "paper", "backtest"):
        raise _fail(f"--source {source!r}: expected auto, paper or backtest", 2)
    client = _client(tracking_uri)
    _require_registered(client, name)
    prod = alias_version(client, name, PRODUCTION)
    if prod is None:
        raise _fail(f"{name} has no production version to monitor", 1)
    if is_cash(prod):
        typer.echo(f"{name}: production is cash (v{prod.version}, position 0): "
                   f"{cash_reason(prod)}; nothing to score")
        return
    if not prod.run_id:
        raise _fail(f"{name} v{prod.version} has no source run to rebuild its features", 1)
    settings = run_settings(client, prod.run_id)
    timeframe = settings.data.timeframe
    try:
        fs, _ = rebuild_features(settings, data)
    except DataValidationError as exc:
        raise _fail(str(exc), 2) from None
    win = window_from_features(fs.frame, _window_bars(window, timeframe), EVAL_CONTEXT_ROWS,
                               settings.backtest, bars_per_year(timeframe), timeframe)
    seen = seen_until(prod, client)
    win = restrict_window(win, seen)
    if drift:
        _monitor_drift(client, name, prod, data, window, drift_share, workspace, db_url)
    if weekly_rescale:
        _monitor_rescale(client, name, data)
    if scored_bars(win) < max(int(min_bars), 2):
        typer.echo(f"{name} v{prod.version}: no unseen data yet: {scored_bars(win)} bar(s) of the "
                   f"window after its last training/validation bar {seen} (need {min_bars})")
        raise typer.Exit(3)
    _monitor_score(client, name, prod, win, settings.data.symbol, timeframe, source=source,
                   metric=metric, tolerance=tolerance, min_bars=int(min_bars), db_url=db_url)


def _monitor_score(client: Any, name: str, prod: Any, win: Any, symbol: str, timeframe: str, *,
                   source: str, metric: str, tolerance: float, min_bars: int,
                   db_url: str | None) -> None:
    """The performance half of ``registry monitor``: production's score from the paper ledger
    (:func:`_paper_source`) or re-scored on ``win``, the 5 % rule, the output lines. Exit 3
    with ``--source paper`` and no ledger covering the window; 1 on a registry refusal."""
    import pandas as pd

    from huracan.evaluation.evidence import CASH
    from huracan.registry.promotion import BACKTEST_SOURCE, RegistryError
    from huracan.registry.promotion import monitor as do_monitor

    scored = pd.DatetimeIndex(pd.to_datetime(win.frame.loc[win.frame.split == "test",
                                                           "timestamp"], utc=True))
    with _engine(db_url) as engine:
        paper, note = _paper_source(engine, symbol, timeframe, scored, source, min_bars,
                                    str(prod.version))
        if paper is None and source == "paper":
            typer.echo(f"{name} v{prod.version}: no paper ledger covering the window: {note}")
            raise typer.Exit(3)
        try:
            res = do_monitor(
                client, engine, name, win, metric=metric, tolerance=tolerance,
                notifier=notifier_from_env(),
                result=None if paper is None else paper.result,
                source=BACKTEST_SOURCE if paper is None else paper.label(),
                evidence={"source_kind": "backtest" if paper is None else "paper",
                          "paper_account": None if paper is None else paper.account,
                          "paper_bars": None if paper is None else paper.bars,
                          "window_bars": len(scored), "source_note": note})
        except RegistryError as exc:
            raise _fail(str(exc), 1) from None
    first, last = scored.min(), scored.max()
    typer.echo(f"{name} v{res.version} on {first} .. {last}: {metric} {res.current_score:.4f}, "
               f"at promotion {res.score_at_promotion:.4f}, tolerance {tolerance:g}; "
               f"source: {res.source}" + (f" ({note})" if note and paper is None else ""))
    if res.degraded and res.rolled_back_to == CASH:
        typer.echo(f"degraded by more than {100 * tolerance:g} % and no earlier production "
                   "version: production is now cash (position 0)")
    elif res.degraded:
        typer.echo(f"degraded by more than {100 * tolerance:g} %: rolled back to "
                   f"v{res.rolled_back_to}")
    else:
        typer.echo("within tolerance: production unchanged")




if __name__ == "__main__":  # = `huracan registry`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app(registry_app)
