"""Registering a version: the step every registered model's versions go through (forecasters,
sizers, the ``cash`` policy), below the gate (:mod:`huracan.registry.promotion`, which
re-exports these) and the cash policy (:mod:`huracan.registry.cash`)."""

from __future__ import annotations

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

#: the prefix of every manifest tag on a registered version (``huracan.symbol``...)
TAG_PREFIX = "huracan."


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (no version to roll back to, unknown model...)."""


def register_version(client: MlflowClient, name: str, model_uri: str, manifest: dict[str, str],
                     timeout_s: int = 300) -> ModelVersion:
    """Register ``model_uri`` (a logged model, ``models:/m-...``) as a new version of ``name``
    (creating the registered model if new) with the manifest as tags, and wait until READY.

    Raises:
        RegistryError: the version did not become READY within ``timeout_s``.
    """
    try:
        client.create_registered_model(name, description="Huracan forecasts of one symbol and "
                                       "timeframe; aliases: production (champion), staging.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    mv = mlflow.register_model(model_uri, name, await_registration_for=timeout_s, tags=manifest)
    mv = client.get_model_version(name, mv.version)
    if mv.status != "READY":
        raise RegistryError(f"{name} v{mv.version} is {mv.status}, not READY")
    return mv
