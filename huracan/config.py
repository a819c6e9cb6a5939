"""Config helpers shared by the entry points: OmegaConf resolvers."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from huracan.datasets import dataset_path

#: where ``${huracan_shared:...}`` looks: ``HURACAN_SHARED_DATA``, else ``../shared/data`` beside
#: the checkout (the recorded exchange data the tests and the parity benchmark read)
SHARED_DATA_ENV = "HURACAN_SHARED_DATA"


def shared_data_root() -> str:
    """The shared data directory: ``HURACAN_SHARED_DATA``, else ``../shared/data`` beside the
    checkout."""
    return str(Path(os.environ.get(SHARED_DATA_ENV)
                    or Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_data_path(relative: str) -> str:
    """Absolute path of a file under the shared data directory.

    Raises:
        FileNotFoundError: naming the file and where it was looked for.
    """
    root = Path(shared_data_root())
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(f"shared data file {relative!r} not found under {root} "
                                f"(set {SHARED_DATA_ENV} to the shared data directory)")
    return str(path)


def register_resolvers() -> None:
    """Register ``${huracan_dataset:NAME}`` (a shipped data file) and ``${huracan_shared:PATH}``
    (a file of the shared data directory); idempotent."""
    if not OmegaConf.has_resolver("huracan_dataset"):
        OmegaConf.register_new_resolver("huracan_dataset", dataset_path)
    if not OmegaConf.has_resolver("huracan_shared"):
        OmegaConf.register_new_resolver("huracan_shared", shared_data_path)
