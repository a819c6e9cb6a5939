"""MkDocs hook: expose the ``huracan`` Typer app to mkdocs-click as a Click command.

mkdocs-click documents a ``click.Command`` found at ``module:attribute``; a Typer app becomes one
through ``typer.main.get_command``. This hook builds it when the site is built (``on_config``) and
registers it as the module ``huracan_cli_reference`` (attribute ``command``), so the CLI reference
page is generated from the app itself and cannot go stale. The app is ``huracan.cli:app`` (the
console script's entry point), wherever its package keeps it.

The page uses mkdocs-click's ``plain`` style: its ``table`` style picks options out by
``isinstance(param, click.Option)``, which the options of Typer's vendored Click do not pass, so
the table would list none.
"""

from __future__ import annotations

import sys
import types
from typing import Any

MODULE = "huracan_cli_reference"


def on_config(config: Any) -> Any:
    import typer.main

    from huracan.cli import app

    module = types.ModuleType(MODULE, "The huracan Typer app as a Click command (docs build only).")
    module.command = typer.main.get_command(app)  # type: ignore[attr-defined]
    sys.modules[MODULE] = module
    return config
