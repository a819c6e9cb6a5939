"""The ``huracan`` console script: operations commands (training stays a Hydra app,
``python -m huracan.train``).

A thin dispatcher: each area owns its sub-app (logic lives in its package) and is mounted here.
"""

from __future__ import annotations

import typer

from huracan.db.cli import db_app, ingest_app

app = typer.Typer(
    name="huracan",
    help="Huracan operations: brain-store schema and ingest (more sub-commands to come).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")

if __name__ == "__main__":  # pragma: no cover
    app()
