"""``python -m huracan.cli``: the ``huracan`` console script."""

from huracan.cli.app import app

app()
