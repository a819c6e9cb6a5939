"""The ``huracan`` console script: operations commands (training stays a Hydra app,
``python -m huracan.train``).

A thin dispatcher: each area owns its sub-app (logic lives in its package) and is mounted here.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer

from huracan.cli.data import download_app, quality_app, validate_app
from huracan.cli.db import db_app, ingest_app
from huracan.cli.drift import drift_app
from huracan.cli.features import features_app
from huracan.cli.lake import lake_app
from huracan.cli.liquidations import liquidations_app
from huracan.cli.nightly import nightly_app
from huracan.cli.paper import paper_app
from huracan.cli.registry import registry_app
from huracan.cli.select import select_command
from huracan.cli.size import size_command

app = typer.Typer(
    name="huracan",
    help="Huracan operations: brain-store schema and ingest, model registry, downloads, the "
         "candle lake, "
         "validation and data-quality reports, feature importance, drift, the model for the "
         "current regime, position size, the nightly pipeline's record.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
app.add_typer(registry_app, name="registry")
app.add_typer(download_app, name="download")
app.add_typer(validate_app, name="validate")
app.add_typer(quality_app, name="quality")
app.add_typer(features_app, name="features")
app.add_typer(liquidations_app, name="liquidations")
app.add_typer(drift_app, name="drift")
app.add_typer(lake_app, name="lake")
app.add_typer(nightly_app, name="nightly")
app.add_typer(paper_app, name="paper")
app.command("select")(select_command)
app.command("size")(size_command)

if __name__ == "__main__":  # pragma: no cover
    app()
