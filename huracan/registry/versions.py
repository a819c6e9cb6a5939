"""Registering a version: the step every registered model's versions go through (forecasters,
sizers, the ``cash`` policy), below the gate (:mod:`huracan.registry.promotion`, which
re-exports these) and the cash policy (:mod:`huracan.registry.cash`)."""

from __future__ import annotations

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from huracan.registry.manifest import (  # TAG_PREFIX re-exported: its historical home
    TAG_PREFIX,
    describe_version,
    refresh_model_description,
    version_tags,
    write_manifest,
)

__all__ = ["TAG_PREFIX", "RegistryError", "register_version"]


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (no version to roll back to, unknown model...)."""


def register_version(client: MlflowClient, name: str, model_uri: str, manifest: dict[str, str],
                     timeout_s: int = 300) -> ModelVersion:
    """Register ``model_uri`` (a logged model, ``models:/m-...``) as a new version of ``name``
    (creating the registered model if new) and wait until READY.

    The manifest (keys with or without ``huracan.``) is written where
    :mod:`huracan.registry.manifest` keeps it: whole as the run's ``registry/manifest.json``
    (before the version exists, so a version never names a missing artifact), its filter
    entries as the version's tags (created with the version, in one call), and as the version's
    Markdown description; the registered model's description lists its aliases.

    Raises:
        RegistryError: the version did not become READY within ``timeout_s``.
    """
    try:
        client.create_registered_model(name)
        refresh_model_description(client, name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    write_manifest(client, manifest)
    mv = mlflow.register_model(model_uri, name, await_registration_for=timeout_s,
                               tags=version_tags(manifest))
    mv = client.get_model_version(name, mv.version)
    if mv.status != "READY":
        raise RegistryError(f"{name} v{mv.version} is {mv.status}, not READY")
    describe_version(client, name, mv.version, manifest)
    return client.get_model_version(name, mv.version)
