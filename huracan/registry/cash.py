"""The built-in ``cash`` policy (position 0) as a version of a registered model.

Every registered model ``huracan-<SYMBOL>-<tf>`` can hold ONE version whose model is
:class:`huracan.registry.cash_model.CashPyfunc`: registered on demand
(:func:`ensure_cash_version`, the first time production goes to cash), logged in its own small
MLflow run (tag ``huracan.role=cash``) and tagged ``huracan.policy=cash``
(:data:`huracan.evaluation.evidence.CASH`). ``production`` points at it when a rollback has no
earlier version to return to or a degraded production has nothing to fall back to
(:func:`huracan.registry.promotion.rollback`); why is the version's ``huracan.cash_reason`` tag
(set before the alias moves) and the ``rolled_back`` event in ``registry_events``. The gate
treats a cash production as no champion: any candidate then only has to beat cash.

Callers that move an alias to it hold the per-model registry lock
(:func:`huracan.registry.lock.registry_lock`); this module takes no lock itself.
"""

from __future__ import annotations

import logging
from typing import Any, TypeGuard

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from huracan.evaluation.evidence import CASH
from huracan.registry.cash_model import DEFAULT_REASON, POLICY_TAG, REASON_TAG, CashPyfunc
from huracan.registry.manifest import manifest_value
from huracan.registry.versions import TAG_PREFIX, register_version
from huracan.tracking.run import pinned_requirements

log = logging.getLogger(__name__)

#: run tag of the run that logs the cash model
ROLE_TAG = "huracan.role"
EXPERIMENT = "huracan"


def is_cash(mv: ModelVersion | None) -> TypeGuard[ModelVersion]:
    """True when ``mv`` is the registered ``cash`` policy (tag ``huracan.policy=cash``)."""
    return mv is not None and (mv.tags or {}).get(POLICY_TAG) == CASH


def cash_reason(mv: ModelVersion) -> str:
    """Why production went to the cash version ``mv`` (its ``huracan.cash_reason`` tag)."""
    return str((mv.tags or {}).get(REASON_TAG) or DEFAULT_REASON)


def find_cash_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The cash version of ``name`` (the newest, should there be several), or ``None``."""
    found = [mv for mv in client.search_model_versions(f"name='{name}'") if is_cash(mv)]
    if not found:
        return None
    return client.get_model_version(name, str(max(int(mv.version) for mv in found)))


def _symbol_timeframe(client: MlflowClient, name: str) -> tuple[str, str]:
    """``(symbol, timeframe)`` of ``name`` from a version's manifest, else parsed from the name
    (``huracan-BTCUSDT-1h`` -> ``BTCUSDT``, ``1h``)."""
    for mv in client.search_model_versions(f"name='{name}'"):
        symbol, timeframe = (manifest_value(client, mv, k) for k in ("symbol", "timeframe"))
        if symbol and timeframe:
            return symbol, timeframe
    stem = name.removeprefix("huracan-")
    symbol, _, timeframe = stem.rpartition("-")
    return symbol or stem, timeframe or "1h"


def _experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment of ``name``'s newest version with a run, else ``huracan`` (created)."""
    versions = sorted(client.search_model_versions(f"name='{name}'"),
                      key=lambda v: -int(v.version))
    for mv in versions:
        if mv.run_id:
            try:
                return str(client.get_run(mv.run_id).info.experiment_id)
            except Exception:  # a deleted run: try the next version
                continue
    from huracan.tracking.run import experiment_id

    return experiment_id(client, EXPERIMENT)


def ensure_cash_version(client: MlflowClient, name: str, *,
                        reason: str = DEFAULT_REASON) -> ModelVersion:
    """The cash version of ``name``, registered first if it has none (at most one per
    registered model; call under the model's registry lock so two processes never both
    register it).

    Registering: a run named ``cash`` (tags ``huracan.role=cash``, ``symbol``, ``timeframe``) in
    the experiment of the model's newest version logs :class:`CashPyfunc` (no artifacts; the
    installed ``huracan`` package is its code, as for the sizer's pyfunc) with the registered
    model name, timeframe and run id as its ``model_config``; the version's tags are
    ``huracan.policy=cash``, ``huracan.model_type=cash``, ``huracan.symbol``,
    ``huracan.timeframe``, ``huracan.run_id`` and ``huracan.cash_reason`` (``reason``).

    Raises:
        huracan.registry.versions.RegistryError: the version did not become READY.
        mlflow.exceptions.MlflowException: the tracking store refused a call.
    """
    found = find_cash_version(client, name)
    if found is not None:
        return found
    symbol, timeframe = _symbol_timeframe(client, name)
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)  # log and register where the client points
    try:
        run = client.create_run(_experiment_id(client, name), run_name=f"cash-{name}",
                                tags={ROLE_TAG: CASH, "symbol": symbol, "timeframe": timeframe,
                                      "model_type": CASH})
        run_id = run.info.run_id
        try:
            with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=CashPyfunc(),
                    model_config={"registered_model": name, "timeframe": timeframe,
                                  "run_id": run_id},
                    pip_requirements=pinned_requirements(("mlflow", "numpy", "pandas")))
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        manifest = {f"{TAG_PREFIX}{k}": v for k, v in {
            "policy": CASH, "model_type": CASH, "symbol": symbol, "timeframe": timeframe,
            "run_id": run_id, "cash_reason": reason}.items()}
        mv = register_version(client, name, str(info.model_uri), manifest)
    finally:
        mlflow.set_tracking_uri(previous_uri)
    log.info("%s: cash policy registered as v%s", name, mv.version)
    return mv


def describe_cash(mv: ModelVersion) -> dict[str, Any]:
    """What ``registry show`` adds for a cash production: the policy and why."""
    return {"policy": CASH, "position": 0, "reason": cash_reason(mv)}
