"""Hydra callbacks: the sweep's MLflow parent run, summary and evidence, secret masking
(:mod:`huracan.callbacks.sweep`) and the registry gate (:mod:`huracan.callbacks.gate`)."""
