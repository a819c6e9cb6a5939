"""MLflow plumbing: store selection, one run per job, parameter flattening, artifact logging.

The default store (no ``MLFLOW_TRACKING_URI``, no ``tracking.tracking_uri``) is a SQLite database
``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``; open it with
``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``. Any SQLite store keeps its
artifacts beside it the same way (``sqlite:///elsewhere/m.db`` -> ``elsewhere/artifacts``) unless
``tracking.artifact_location`` says otherwise (:func:`artifact_root`), and relative file outputs
of a job (``data.quality_log``) land in the store's directory too (:func:`beside_store`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from huracan.secrets import mask_secrets, mask_url

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


def default_tracking_uri(store_dir: Path) -> str:
    """``sqlite:///<store_dir>/mlflow.db`` (absolute path)."""
    return f"sqlite:///{(store_dir / 'mlflow.db').resolve()}"


#: MLflow's experiment-type tag and the value that marks an experiment as model training (the
#: value MLflow's UI itself writes from its experiment-type selector; MLflow 3.x UIs without
#: the per-browser workflow switch open such an experiment on its runs). MLflow 3.17's UI reads
#: its global GenAI / Model training switch instead: see :data:`RUNS_VIEW_QUERY`
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def experiment_id(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of MLflow experiment ``name``, created when missing (with ``artifact_location``,
    MLflow's default location when ``None``), tagged ``mlflow.experimentKind =
    custom_model_development`` (MLflow's own mark of a model-training experiment: see
    :data:`EXPERIMENT_KIND_TAG`; :func:`ui_link` opens the runs in any 3.x UI). The one place every
    Huracan experiment is created or reused (training, monitoring, drift, sizer, tuning, cash):
    an existing experiment without the tag gets it; one whose kind a user chose in the UI keeps
    that choice.

    Args:
        client: an ``mlflow.MlflowClient`` (its tracking URI is the store written to).

    Raises:
        mlflow.exceptions.MlflowException: the store refused the creation and the experiment
            does not exist either (a concurrent creator is tolerated).
    """
    tags = {EXPERIMENT_KIND_TAG: MODEL_TRAINING}
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return str(client.create_experiment(name, artifact_location=artifact_location,
                                                tags=tags))
        except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent job
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if EXPERIMENT_KIND_TAG not in (exp.tags or {}):
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return str(exp.experiment_id)


#: MLflow 3.17's UI keeps its GenAI / Model training switch per browser (localStorage
#: ``mlflow.workflowType``, GenAI by default; the experiment tag above is not read while the
#: switch exists); this query parameter opens a page in the Model training view whatever the
#: browser remembers
RUNS_VIEW_QUERY = "workflowType=machine_learning"
#: where ``make mlflow-ui`` serves a local store's UI
LOCAL_UI = "http://127.0.0.1:5000"


def ui_link(tracking_uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI address that opens ``experiment_id``'s runs (or run ``run_id``) in the
    Model training view: on the tracking server itself for an ``http(s)://`` URI (credentials
    dropped), else on :data:`LOCAL_UI` (``make mlflow-ui``; another port: change it in the
    address)."""
    from urllib.parse import urlsplit

    base = LOCAL_UI
    if tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        base = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "") \
            + parts.path.rstrip("/")
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{base}/#/experiments/{experiment_id}/{page}?{RUNS_VIEW_QUERY}"


def store_directory(tracking_uri: str | None, store_dir: Path) -> Path | None:
    """The local directory of a tracking store: ``store_dir`` for the default store (no URI),
    the database's directory for ``sqlite:///<path>``, the directory itself for a ``file:``
    URI or a plain path; ``None`` for a server or another database (``http://``,
    ``postgresql://``...), whose files live where that store says."""
    uri = tracking_uri or ""
    if not uri:
        return store_dir
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:"))
    return None if "://" in uri else Path(uri)


def artifact_root(tracking_uri: str | None, store_dir: Path,
                  configured: str | None = None) -> str | None:
    """The artifact location of an experiment Huracan creates: ``configured``
    (``tracking.artifact_location``: a URI such as ``s3://bucket/huracan`` kept as given, or a
    path, a relative one resolved against the store's directory) when set; else
    ``<db dir>/artifacts`` for a SQLite store (the default store's ``store_dir/artifacts``)
    as a ``file://`` URI; else ``None`` (MLflow's own default: the ``file:`` store's directory,
    the server's artifact root)."""
    if configured:
        if "://" in configured or configured.startswith("file:"):
            return configured
        path = Path(configured)
        base = store_directory(tracking_uri, store_dir)
        return (path if path.is_absolute() or base is None else base / path).resolve().as_uri()
    uri = tracking_uri or default_tracking_uri(store_dir)
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def beside_store(path: str | None, tracking_uri: str | None, store_dir: Path) -> str | None:
    """``path`` (a job's file output, e.g. ``data.quality_log``) as written: ``None`` and
    absolute paths unchanged, a relative path joined to the store's directory
    (:func:`store_directory`: ``sqlite:///elsewhere/m.db`` -> ``elsewhere/<path>``; the default
    store -> ``mlruns/<path>``), or left relative to the working directory for a remote store."""
    if not path or Path(path).is_absolute():
        return path
    base = store_directory(tracking_uri, store_dir)
    return path if base is None else str(base / path)


def configure(tracking_uri: str | None, store_dir: Path, experiment_name: str,
              artifact_location: str | None = None) -> str:
    """Point MLflow at ``tracking_uri`` (or the default SQLite store under ``store_dir``) and
    return the id of ``experiment_name`` (:func:`experiment_id`: created when missing, with
    artifacts where :func:`artifact_root` says: ``artifact_location`` when given, else beside a
    SQLite store; and marked as model training so the MLflow UI opens it on its runs)."""
    if not tracking_uri:
        store_dir.mkdir(parents=True, exist_ok=True)
    root = artifact_root(tracking_uri, store_dir, artifact_location)
    mlflow.set_tracking_uri(tracking_uri or default_tracking_uri(store_dir))
    return experiment_id(mlflow.MlflowClient(), experiment_name, root)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested mapping to ``{"model.learning_rate": "0.03", ...}`` with secrets masked
    and values cut to MLflow's 6,000-character limit."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = mask_url(str(value))[:MAX_PARAM_LENGTH]
    return flat


@contextmanager
def job_run(experiment_id: str, run_name: str, tags: dict[str, str],
            parent_run_id: str | None = None) -> Iterator[str]:
    """One MLflow run for one job; yields the run id. The run ends FINISHED, or FAILED when the
    body raises (the exception propagates). With ``parent_run_id`` (a RUNNING sweep run) the run
    is nested under it, as the MLflow UI shows a sweep's jobs."""
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                           tags={k: mask_url(str(v)) for k, v in tags.items()},
                           parent_run_id=parent_run_id)
    status = "FAILED"
    try:
        yield run.info.run_id
        status = "FINISHED"
    finally:
        mlflow.end_run(status=status)


def log_config(resolved: Mapping[str, Any]) -> None:
    """Log a resolved config into the active run, secrets masked (:func:`mask_secrets`): every
    leaf as a param (``model.learning_rate``) and the whole tree as ``config/resolved.yaml``."""
    masked = mask_secrets(resolved)
    mlflow.log_params(flatten(masked))
    mlflow.log_dict(masked, "config/resolved.yaml")


def log_datasets(source: str, frames: list[tuple[pd.DataFrame, str, str]]) -> None:
    """Record what the run saw with ``mlflow.log_input`` (the UI's Datasets column): each
    ``(frame, name, context)`` becomes an ``mlflow.data`` pandas dataset whose source is the
    candle file and whose digest is MLflow's hash of the rows; context ``training``,
    ``validation`` or ``evaluation``. Frames need a ``label`` column (the targets)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings():  # a local path matches two equivalent artifact sources
        warnings.filterwarnings("ignore", message="The specified dataset source")
        src = resolve_dataset_source(source)
    datasets: list[Any] = [from_pandas(frame, source=src, targets="label", name=name)
                           for frame, name, _ in frames]
    mlflow.log_inputs(datasets, contexts=[ctx for _, _, ctx in frames],
                      tags_list=[None] * len(frames))


def log_frame(frame: pd.DataFrame, artifact_path: str) -> None:
    """Log ``frame`` as a Parquet artifact at ``artifact_path`` (``backtest/returns.parquet``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_path).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(artifact_path).parent))


def log_figure(fig: Figure, artifact_file: str) -> None:
    """Log a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def pinned_requirements(distributions: tuple[str, ...]) -> list[str]:
    """``["numpy==2.4.6", ...]`` from the installed versions (MLflow's inference is wrong for the
    CPU distributions, see STACK.md)."""
    pins = []
    for dist in distributions:
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pins.append(dist)
    return pins
