"""Real market data shipped with the package (see DATA_SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

DATASETS_DIR = Path(__file__).resolve().parent


def dataset_path(name: str) -> str:
    """Absolute path of a shipped data file.

    Raises:
        FileNotFoundError: naming the file and listing what is shipped.
    """
    path = DATASETS_DIR / name
    if not path.is_file():
        shipped = sorted(p.name for p in DATASETS_DIR.glob("*.parquet"))
        raise FileNotFoundError(f"no shipped dataset {name!r}; available: {shipped}")
    return str(path)
