"""``huracan drift ...``: Evidently drift reports of production models, the weekly scaler refit,
and the drift records in the brain store.

MLflow store: ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` (default the local store
``sqlite:///mlruns/mlflow.db``). Brain store: ``--db-url`` or ``HURACAN_DB_URL`` (default
``sqlite:///huracan.db``). Evidently workspace: ``--workspace`` (default ``<MLflow store
dir>/evidently``; open it with ``evidently ui --workspace DIR``).

Exit codes of ``drift report``: 0 no dataset drift (share of drifted features below the
threshold), 4 drift at or over the threshold (a retrain request and an alert were written),
2 unusable input (bad window, threshold or data file), 1 refused (unknown model or alias, no
training window in its manifest) or store error. The other commands: 0 done, 1 refused or store
error, 2 unusable input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from huracan.alerts import notifier_from_env
from huracan.cli.db import DbUrl, _engine, _fail
from huracan.cli.registry import TrackingUri, _client
from huracan.db import migrate

#: exit code of ``drift report`` when the share of drifted features reaches the threshold
EXIT_DRIFT = 4

drift_app = typer.Typer(help="Drift of production models: Evidently reports, retrain requests, "
                        "weekly scaler refits.", no_args_is_help=True)

Symbol = Annotated[str, typer.Argument(help="Market symbol, e.g. BTC/USDT.", show_default=False)]
Timeframe = Annotated[str, typer.Option("--timeframe", "-t", help="Bar timeframe of the model.")]
Model = Annotated[str | None, typer.Option(
    "--model", show_default=False,
    help="Registered model: NAME (its production alias), NAME@ALIAS or NAME/VERSION; default "
         "huracan-<SYMBOL>-<timeframe>@production.")]
Data = Annotated[Path | None, typer.Option(
    "--data", show_default=False,
    help="OHLCV file with the newest data (default: the file the model trained on).")]


def _model(symbol: str, timeframe: str, model: str | None) -> str:
    from huracan.registry.promotion import PRODUCTION, registered_model_name

    return model or f"{registered_model_name(symbol, timeframe)}@{PRODUCTION}"


def _check_symbol(result_symbol: str, result_timeframe: str, symbol: str, timeframe: str) -> None:
    if (result_symbol, result_timeframe) != (symbol, timeframe):
        typer.echo(f"note: the model trades {result_symbol} {result_timeframe}, not {symbol} "
                   f"{timeframe}", err=True)


@drift_app.command()
def report(
    symbol: Symbol,
    timeframe: Timeframe = "1h",
    model: Model = None,
    current: Annotated[str, typer.Option(
        "--current", help="Current window: the newest bars as a duration (30d, 72h) or a bar "
                          "count (720). Ignored with --from/--to.")] = "30d",
    start: Annotated[str | None, typer.Option(
        "--from", show_default=False, help="Current window start (inclusive; UTC if no zone).")]
    = None,
    end: Annotated[str | None, typer.Option(
        "--to", show_default=False, help="Current window end (inclusive; UTC if no zone).")]
    = None,
    data: Data = None,
    share: Annotated[float, typer.Option(
        "--share", help="Drift threshold: share of drifted features, in (0, 1].")] = 0.5,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", show_default=False,
        help="Evidently workspace directory (default <MLflow store dir>/evidently).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", show_default=False, help="Directory for the HTML/JSON report (default "
                                          "<workspace>/../drift_reports/<model>/...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    current_source: Annotated[str, typer.Option(
        "--current-source", help="Current window rows: logged (the prediction log's bars, "
        "features rebuilt from the logged inputs), rebuilt (from --data), or auto (logged when "
        "the log holds >= 90 % of the window's bars).")] = "auto",
    tracking_uri: TrackingUri = None,
    db_url: DbUrl = None,
) -> None:
    """Evidently drift report of the production model of SYMBOL: its training window (from its
    manifest) against the current window; logged to MLflow, stored, alerted when over --share.
    The current window is what production was asked (the prediction log's inputs) when the log
    covers it, else rebuilt from --data; the output says which (current_source).
    Exit code 0 no drift, 4 drift at or over the threshold, 2 bad input, 1 refused."""
    from mlflow.exceptions import MlflowException

    from huracan.analysis.drift import DriftInputError, drift_for_model
    from huracan.data.ohlcv import DataValidationError

    if not 0.0 < share <= 1.0:
        raise _fail(f"--share {share}: must be in (0, 1]", 2)
    window: str | tuple[Any, Any] = (start, end) if (start or end) else current
    client = _client(tracking_uri)
    name = _model(symbol, timeframe, model)
    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        try:
            res = drift_for_model(client, engine, name, current=window, data_path=data,
                                  drift_share=share, workspace=workspace,
                                  notifier=notifier_from_env(), out_dir=out,
                                  current_source=current_source)
        except (DriftInputError, DataValidationError, FileNotFoundError) as exc:
            raise _fail(str(exc), 2) from None
        except LookupError as exc:
            raise _fail(str(exc), 1) from None
        except MlflowException as exc:
            raise _fail(f"{name}: {str(exc).splitlines()[0]}", 1) from None
    rep = res.report
    if as_json:
        from huracan.data.quality_db import json_safe

        typer.echo(json.dumps(json_safe({
            **rep.as_dict(), "model": res.model_name, "version": res.version,
            "report_run_id": res.report_run_id, "drift_report_id": res.drift_report_id,
            "retrain_request_id": res.retrain_request_id, "workspace": str(res.workspace),
            "snapshot_id": res.snapshot_id, "current_source": res.current_source,
            "current_note": res.current_note, "step_timings": res.timings}), indent=2))
    else:
        _check_symbol(res.symbol, res.timeframe, symbol, timeframe)
        _print_report(res)
    if rep.dataset_drift:
        raise typer.Exit(EXIT_DRIFT)


def _print_report(res: Any) -> None:
    rep = res.report
    typer.echo(f"{res.model_name} v{res.version} ({res.symbol} {res.timeframe})")
    typer.echo(f"reference (training window): {rep.reference_start} .. {rep.reference_end} "
               f"({rep.reference_rows} rows)")
    typer.echo(f"current:                     {rep.current_start} .. {rep.current_end} "
               f"({rep.current_rows} rows)"
               + ("  [overlaps the model's training/validation data]"
                  if res.current_overlaps_training else ""))
    typer.echo(f"current_source: {res.current_source}"
               + (" (the prediction log's inputs)" if res.current_source == "logged"
                  else f" (from the data file; {res.current_note})" if res.current_note
                  else " (from the data file)"))
    verdict = "DRIFT" if rep.dataset_drift else "no drift"
    typer.echo(f"drift share {rep.drift_share:.3f} ({rep.n_drifted}/{rep.n_features} features), "
               f"threshold {rep.threshold:g}: {verdict}")
    typer.echo(f"{'column':<22}{'method':<32}{'score':>9}{'thresh':>8}  drift  "
               f"{'mean_shift':>10}{'std_ratio':>10}")
    scaling = {s.feature: s for s in rep.scaling}
    for c in [*rep.features, *(x for x in (rep.prediction, rep.target) if x is not None)]:
        s = scaling.get(c.column)
        extra = f"{s.mean_shift:>10.2f}{s.std_ratio:>10.2f}" if s is not None else ""
        label = {"prediction": f"{c.column} (forecast)",
                 "target": f"{c.column} (target)"}.get(c.role, c.column)
        typer.echo(f"{label[:21]:<22}{c.method[:31]:<32}{c.score:>9.4f}{c.threshold:>8.3g}  "
                   f"{'yes' if c.drifted else 'no':<5}  {extra}")
    typer.echo("drifted features: " + (", ".join(rep.drifted_features) or "none"))
    if rep.target is None:
        typer.echo(f"target drift: not computed ({rep.target_note})")
    if rep.scaling_flagged:
        typer.echo("scaling moved beyond limits: " + ", ".join(rep.scaling_flagged))
    typer.echo(f"html: {rep.html_path}")
    typer.echo(f"json: {rep.json_path}")
    typer.echo(f"mlflow run: {res.report_run_id}")
    typer.echo(f"workspace: {res.workspace} (project {res.workspace_project_id}, snapshot "
               f"{res.snapshot_id}); open with: evidently ui --workspace {res.workspace}")
    typer.echo(f"drift_reports row {res.drift_report_id}"
               + (f"; retrain request {res.retrain_request_id}"
                  + ("" if res.retrain_request_created else " (already pending)")
                  if res.retrain_request_id is not None else ""))
    t = {**res.timings, **{f"report.{k}": v for k, v in rep.timings.items()}}
    typer.echo("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()))


@drift_app.command()
def rescale(
    symbol: Symbol,
    timeframe: Timeframe = "1h",
    model: Model = None,
    data: Data = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Refit a scaler on the newest window as long as the model's training window and log old
    vs new parameters to MLflow. The registered model is NOT changed."""
    from mlflow.exceptions import MlflowException

    from huracan.analysis.drift import RESCALE_NOTE, weekly_rescale
    from huracan.data.ohlcv import DataValidationError

    client = _client(tracking_uri)
    name = _model(symbol, timeframe, model)
    try:
        res = weekly_rescale(client, name, data_path=data)
    except (DataValidationError, FileNotFoundError) as exc:
        raise _fail(str(exc), 2) from None
    except LookupError as exc:
        raise _fail(str(exc), 1) from None
    except MlflowException as exc:
        raise _fail(f"{name}: {str(exc).splitlines()[0]}", 1) from None
    typer.echo(f"{res.model_name} v{res.version}: scaler refitted on {res.window_start} .. "
               f"{res.window_end} ({res.rows} rows)")
    typer.echo(f"{'feature':<16}{'old_mean':>12}{'new_mean':>12}{'old_scale':>12}"
               f"{'new_scale':>12}{'shift':>8}{'ratio':>8}")
    for r in res.params.itertuples():
        typer.echo(f"{r.feature:<16}{r.old_mean:>12.4g}{r.new_mean:>12.4g}{r.old_scale:>12.4g}"
                   f"{r.new_scale:>12.4g}{r.mean_shift:>8.2f}{r.scale_ratio:>8.2f}")
    typer.echo(f"max |mean shift| {res.max_abs_mean_shift:.2f} old std; max |log scale ratio| "
               f"{res.max_scale_ratio_dev:.2f}")
    typer.echo(f"mlflow run: {res.run_id}")
    typer.echo(f"note: {RESCALE_NOTE}")


@drift_app.command()
def history(
    symbol: Symbol,
    timeframe: Timeframe = "1h",
    model: Model = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest reports shown.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    db_url: DbUrl = None,
) -> None:
    """The stored drift reports of the model of SYMBOL, newest first."""
    from huracan.analysis.drift_store import drift_history

    name = _model(symbol, timeframe, model).removeprefix("models:/").split("@", 1)[0]
    name = name.split("/", 1)[0]
    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        rows = drift_history(engine, name, limit=limit)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        typer.echo(f"{name}: no drift reports")
        return
    typer.echo(f"{'created':<27}{'ver':>4}  {'current window':<45}{'share':>7}{'drift':>7}  "
               "report run / drifted features")
    for r in rows:
        typer.echo(f"{r.created_at[:26]:<27}{r.model_version or '-':>4}  "
                   f"{r.current_start[:16] + ' .. ' + r.current_end[:16]:<45}"
                   f"{r.drift_share:>7.2f}{'yes' if r.drifted else 'no':>7}  "
                   f"{r.report_run_id} {','.join(r.drifted_features)}")


@drift_app.command()
def requests(
    all_requests: Annotated[bool, typer.Option("--all", help="Also consumed requests.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    db_url: DbUrl = None,
) -> None:
    """Retrain requests left by drift over threshold (pending ones by default): what the nightly
    pipeline retrains."""
    from huracan.analysis.drift_store import retrain_requests

    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        rows = retrain_requests(engine, pending_only=not all_requests)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no retrain requests" + ("" if all_requests else " pending"))
        return
    for r in rows:
        state = f"consumed {r.consumed_at} by {r.consumed_by}" if r.consumed_at else "pending"
        typer.echo(f"#{r.id} {r.created_at[:19]} {r.model_name} v{r.model_version} "
                   f"({r.symbol} {r.timeframe}) [{state}]: {r.reason}")


if __name__ == "__main__":  # = `huracan drift`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app(drift_app)
