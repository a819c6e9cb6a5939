"""Config helpers shared by the entry points: OmegaConf resolvers."""

from __future__ import annotations

from omegaconf import OmegaConf

from huracan.datasets import dataset_path


def register_resolvers() -> None:
    """Register ``${huracan_dataset:NAME}`` (absolute path of a shipped data file); idempotent."""
    if not OmegaConf.has_resolver("huracan_dataset"):
        OmegaConf.register_new_resolver("huracan_dataset", dataset_path)
