"""``huracan features ...``: analyse a run's feature importance, show the latest top features and
how the ranking moved over the stored analyses.

MLflow store: ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` (default the local store
``sqlite:///mlruns/mlflow.db``). Brain store: ``--db-url`` or ``HURACAN_DB_URL`` (default
``sqlite:///huracan.db``). Exit codes: 0 done, 1 refused (no logged model, data changed, nothing
stored) or store error, 2 unusable input (unknown run).
"""

from __future__ import annotations

import json
from typing import Annotated

import pandas as pd
import typer

from huracan.alerts import notifier_from_env
from huracan.cli.db import DbUrl, _engine, _fail
from huracan.cli.registry import TrackingUri, _client
from huracan.db import migrate

features_app = typer.Typer(help="Feature importance: analyse runs, top features, ranking trends.",
                           no_args_is_help=True)

Symbol = Annotated[str, typer.Argument(help="Market symbol, e.g. BTC/USDT.", show_default=False)]
Timeframe = Annotated[str, typer.Option("--timeframe", "-t", help="Bar timeframe of the runs.")]
ModelType = Annotated[str | None, typer.Option(
    "--model-type", show_default=False,
    help="Only analyses of this model (lightgbm, lstm...); default any.")]
METHOD_COLUMNS = ("shap", "permutation", "correlation")


@features_app.command()
def analyze(
    run_id: Annotated[str, typer.Option("--run-id", help="MLflow run to analyse.",
                                        show_default=False)],
    repeats: Annotated[int, typer.Option(min=1, help="Permutation repeats per feature.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the permutations.")] = 42,
    shift_threshold: Annotated[float, typer.Option(
        help="Alert when the rank correlation with the previous analysis is below this.")] = 0.5,
    top_n: Annotated[int, typer.Option("--top-n", min=1,
                                       help="Top features compared and printed.")] = 10,
    tracking_uri: TrackingUri = None,
    db_url: DbUrl = None,
) -> None:
    """Rank the features of RUN_ID's model by SHAP, permutation and correlation; store the
    rankings, log them to the run and check for a shift."""
    from mlflow.exceptions import MlflowException

    from huracan.pipeline import analyze_run

    client = _client(tracking_uri)
    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        try:
            out = analyze_run(client, engine, run_id, n_repeats=repeats, seed=seed,
                              shift_threshold=shift_threshold, top_n=top_n,
                              notifier=notifier_from_env())
        except (LookupError, ValueError) as exc:
            raise _fail(str(exc), 1) from None
        except MlflowException as exc:
            raise _fail(f"run {run_id}: {str(exc).splitlines()[0]}", 2) from None
    res = out.result
    typer.echo(f"run {run_id} ({out.model_type} {out.symbol} {out.timeframe}): "
               f"{out.rows_stored} rows stored in {out.seconds:.2f}s")
    typer.echo("time per method: " + ", ".join(f"{m} {t:.3f}s" for m, t in res.timings.items())
               + (" (SHAP reused)" if res.shap_reused else ""))
    ranks = {m: res.ranking(m).set_index("feature")["rank"] for m in res.importances}
    methods = [m for m in METHOD_COLUMNS if m in ranks]
    typer.echo(f"{'rank':>4}  {'feature':<24}{'mean_rank':>10}"
               + "".join(f"{m:>13}" for m in methods))
    for row in res.ranking().head(top_n).itertuples():
        typer.echo(f"{row.rank:>4}  {row.feature:<24}{row.importance:>10.2f}"
                   + "".join(f"{ranks[m][row.feature]:>13}" for m in methods))
    from huracan.analysis.families import family_report

    typer.echo(f"families: {family_report(res.importances, res.feature_names)['summary']}")
    shift = out.shift
    if shift is None:
        typer.echo("shift: no previous analysis of this model to compare with")
    else:
        flag = "SHIFT (alerted)" if shift.alerted else "stable"
        typer.echo(f"shift vs run {shift.previous_run_id}: rho {shift.rho:.3f} over the top "
                   f"{shift.top_n} ({flag}); entries {shift.entries or '-'}; "
                   f"exits {shift.exits or '-'}")


@features_app.command()
def top(
    symbol: Symbol,
    timeframe: Timeframe = "1h",
    n: Annotated[int, typer.Option("--n", min=1, help="Number of features.")] = 20,
    method: Annotated[str, typer.Option(help="aggregate, shap, permutation or correlation.")]
    = "aggregate",
    model_type: ModelType = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    db_url: DbUrl = None,
) -> None:
    """The latest stored ranking of SYMBOL's features (aggregate: mean rank across methods)."""
    from huracan.db.queries import top_features

    with _engine(db_url) as engine:
        frame = top_features(engine, symbol, n, timeframe=timeframe, method=method,
                             model_type=model_type)
    if frame.empty:
        raise _fail(f"no stored {method} feature ranking for {symbol} {timeframe}"
                    + (f" ({model_type})" if model_type else ""), 1)
    first = frame.iloc[0]
    if as_json:
        typer.echo(json.dumps({
            "symbol": symbol, "timeframe": timeframe, "method": method,
            "run_id": first["run_id"], "model_type": first["model_type"],
            "analyzed_at": first["analyzed_at"].isoformat(),
            "features": [{"rank": int(r.rank), "feature": r.feature,
                          "importance": float(r.importance)} for r in frame.itertuples()],
        }, indent=2))
        return
    label = "mean rank" if method == "aggregate" else "importance"
    typer.echo(f"{symbol} {timeframe}: {method} ranking of run {first['run_id']} "
               f"({first['model_type']}), analysed {first['analyzed_at']:%Y-%m-%d %H:%M:%S} UTC")
    typer.echo(f"{'rank':>4}  {'feature':<24}{label:>12}")
    fmt = ".2f" if method == "aggregate" else ".4g"
    for r in frame.itertuples():
        typer.echo(f"{r.rank:>4}  {r.feature:<24}{r.importance:>12{fmt}}")


def trend_table(history: pd.DataFrame, n: int) -> pd.DataFrame:
    """Ranks of the top features across analyses: one column per analysis (oldest first, labelled
    ``(analyzed_at, run_id, model_type)``), one row per feature that is in the top ``n`` of any
    analysis shown (the latest analysis's top ``n`` first, by rank, then the others by best rank).
    Cells are ranks (NaN where the feature was not ranked).

    Args:
        history: :func:`huracan.analysis.importance_store.ranking_history` output.
        n: top size.
    """
    if history.empty:
        return pd.DataFrame()
    keys = (history[["analyzed_at", "run_id", "model_type"]].drop_duplicates()
            .sort_values(["analyzed_at", "run_id"]))
    columns = list(keys.itertuples(index=False, name=None))
    wide = history.pivot_table(index="feature", columns=["analyzed_at", "run_id", "model_type"],
                               values="rank", aggfunc="min")
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(
        columns, names=["analyzed_at", "run_id", "model_type"]))
    latest = wide[columns[-1]].dropna().sort_values(kind="stable")
    first_rows = latest.index[latest <= n].tolist()
    best = wide.min(axis=1)
    others = best[(best <= n) & ~best.index.isin(first_rows)].sort_values(kind="stable")
    return wide.loc[first_rows + others.index.tolist()]


@features_app.command()
def trend(
    symbol: Symbol,
    timeframe: Timeframe = "1h",
    n: Annotated[int, typer.Option("--n", min=1, help="Top features followed.")] = 10,
    last: Annotated[int, typer.Option("--last", min=1, help="Newest analyses shown.")] = 8,
    method: Annotated[str, typer.Option(help="aggregate, shap, permutation or correlation.")]
    = "aggregate",
    model_type: ModelType = None,
    db_url: DbUrl = None,
) -> None:
    """How the top features' ranks moved over the stored analyses of SYMBOL (oldest left;
    'move' = first shown rank - latest rank, positive = rose)."""
    from huracan.analysis.importance_store import ranking_history

    with _engine(db_url) as engine:
        history = ranking_history(engine, symbol, timeframe, method, model_type=model_type,
                                  limit=last)
    if history.empty:
        raise _fail(f"no stored {method} feature ranking for {symbol} {timeframe}"
                    + (f" ({model_type})" if model_type else ""), 1)
    table = trend_table(history, n)
    cols = list(table.columns)
    width = 16
    typer.echo(f"{symbol} {timeframe}: {method} rank of the top {n} features over the last "
               f"{len(cols)} analyses")
    for i, (label, fmt) in enumerate((("analysed (UTC)", lambda c: f"{c[0]:%m-%d %H:%M:%S}"),
                                      ("run", lambda c: str(c[1])[:12]),
                                      ("model", lambda c: str(c[2])[:14]))):
        tail = f"{'move':>6}" if i == 2 else ""
        typer.echo(f"{label:<24}" + "".join(f"{fmt(c):>{width}}" for c in cols) + tail)
    for feature, row in table.iterrows():
        cells = "".join(f"{'-' if pd.isna(v) else int(v):>{width}}" for v in row)
        move = ("-" if pd.isna(row.iloc[0]) or pd.isna(row.iloc[-1])
                else f"{int(row.iloc[0]) - int(row.iloc[-1]):+d}")
        typer.echo(f"{feature!s:<24}" + cells + f"{move:>6}")


if __name__ == "__main__":  # = `huracan features`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app(features_app)
