"""``huracan nightly status|list``: what the nightly pipeline did, from ``pipeline_runs``.

- ``status [RUN_ID]``: every step of one night (default: the latest), per symbol: status,
  attempts, wall seconds, detail; ``--json`` for machines. Exit code 1 when a step failed or is
  still ``running`` (a night that died is visible here before its rerun).
- ``list``: the nights stored, newest first, with their counts of done/skipped/failed steps.

Running the night is a Hydra app: ``python -m huracan.nightly``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from huracan.cli.db import DbUrl, _engine, _fail

nightly_app = typer.Typer(help="The nightly pipeline's record (pipeline_runs); run a night with "
                          "python -m huracan.nightly.", no_args_is_help=True)


def _latest(engine: object) -> str | None:
    from sqlalchemy import func, select

    from huracan.db.tables import PipelineRun

    with engine.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute(select(PipelineRun.run_id, func.max(PipelineRun.started_at).label("t"))
                           .group_by(PipelineRun.run_id).order_by(func.max(
                               PipelineRun.started_at).desc()).limit(1)).first()
    return str(row[0]) if row else None


@nightly_app.command()
def status(
    run_id: Annotated[str | None, typer.Argument(help="The night (default: the latest).",
                                                 show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    db_url: DbUrl = None,
) -> None:
    """Every step of one night, per symbol (exit 1 when a step failed or is still running)."""
    from huracan.db import migrate
    from huracan.orchestration.runs import PipelineRunStore

    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        night = run_id or _latest(engine)
        if night is None:
            raise _fail("no nightly run recorded in pipeline_runs", 1)
        rows = PipelineRunStore(engine).steps(night)
    if not rows:
        raise _fail(f"no steps recorded for night {night!r}", 1)
    if as_json:
        typer.echo(json.dumps([{**r.__dict__, "started_at": r.started_at.isoformat(),
                                "ended_at": r.ended_at.isoformat() if r.ended_at else None}
                               for r in rows], indent=2))
    else:
        typer.echo(f"night {night}")
        typer.echo(f"{'symbol':<16}{'step':<12}{'status':<9}{'tries':>5}{'seconds':>9}  detail")
        for r in rows:
            secs = f"{r.seconds:.1f}" if r.seconds is not None else "-"
            typer.echo(f"{r.symbol:<16}{r.step:<12}{r.status:<9}{r.attempts:>5}{secs:>9}  "
                       f"{(r.detail or '')[:120]}")
    if any(r.status in ("failed", "running") for r in rows):
        raise typer.Exit(1)


@nightly_app.command("list")
def list_nights(
    limit: Annotated[int, typer.Option(min=1, help="Nights shown.")] = 20,
    db_url: DbUrl = None,
) -> None:
    """The nights stored, newest first: steps done, skipped, failed and running."""
    from sqlalchemy import case, func, select

    from huracan.db import migrate
    from huracan.db.tables import PipelineRun
    from huracan.orchestration.runs import NIGHT

    pr = PipelineRun
    counts = [func.sum(case((pr.status == s, 1), else_=0)).label(s)
              for s in ("done", "skipped", "failed", "running")]
    with _engine(db_url) as engine:
        migrate.require_current_schema(engine)
        with engine.connect() as conn:
            symbols = func.count(func.distinct(case((pr.symbol != NIGHT, pr.symbol))))
            rows = conn.execute(
                select(pr.run_id, func.min(pr.started_at), symbols, *counts)
                .group_by(pr.run_id).order_by(func.min(pr.started_at).desc()).limit(limit)).all()
    if not rows:
        typer.echo("no nightly run recorded in pipeline_runs")
        return
    typer.echo(f"{'night':<28}{'started':<27}{'symbols':>8}{'done':>6}{'skipped':>8}"
               f"{'failed':>7}{'running':>8}")
    for r in rows:
        typer.echo(f"{r[0]:<28}{str(r[1])[:25]:<27}{r[2]:>8}{r[3]:>6}{r[4]:>8}{r[5]:>7}{r[6]:>8}")


if __name__ == "__main__":  # = `huracan nightly`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app(nightly_app)
