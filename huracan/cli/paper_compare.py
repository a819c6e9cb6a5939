"""``huracan paper compare``: placeholder, built in this issue."""

from __future__ import annotations

import typer


def compare_command(symbol: str) -> None:
    """Not built yet."""
    raise typer.Exit(1)
