"""The ``huracan`` Typer app (console script ``huracan = "huracan.cli:app"``), one module per
command group: :mod:`~huracan.cli.app` (the root app mounting them), :mod:`~huracan.cli.db`
(``db``, ``ingest``), :mod:`~huracan.cli.registry`, :mod:`~huracan.cli.data` (``download``,
``validate``, ``quality``), :mod:`~huracan.cli.lake`, :mod:`~huracan.cli.liquidations`,
:mod:`~huracan.cli.features`, :mod:`~huracan.cli.drift`, :mod:`~huracan.cli.select`,
:mod:`~huracan.cli.size`, :mod:`~huracan.cli.nightly`.

``app`` is loaded on first access (PEP 562), so importing (or ``python -m``-running) one
command group's module does not import every other group. The first access also rebinds the
package's ``app`` from the submodule :mod:`huracan.cli.app` (which the import system binds under
the same name) to the Typer app itself; code that imports the submodule first should take the app
from it (``from huracan.cli.app import app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huracan.cli.app import app

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from huracan.cli.app import app as typer_app

        globals()["app"] = typer_app  # not the submodule of the same name
        return typer_app
    raise AttributeError(f"module 'huracan.cli' has no attribute {name!r}")
