"""Alias: the old home of the registry gate callback, kept so Hydra configs of past runs
(``_target_: huracan.registry.callback.RegistryGate``) and old imports still resolve. It lives in
:mod:`huracan.callbacks.gate`; new code imports from there."""

from huracan.callbacks.gate import (
    GATE_FILE,
    RegistryGate,
    StoreTrials,
    best_candidates,
    store_trials,
)

__all__ = ["GATE_FILE", "RegistryGate", "StoreTrials", "best_candidates", "store_trials"]
