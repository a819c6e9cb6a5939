"""``huracan paper ...``: the paper-trading loop (``run``), its offline replay (``replay``) and
live-vs-backtest attribution (``compare``); logic in :mod:`huracan.paper`."""

from __future__ import annotations

import typer

from huracan.cli.paper_compare import compare_command
from huracan.cli.paper_replay import replay_command
from huracan.cli.paper_run import run_command

paper_app = typer.Typer(
    help="Paper trading: production asked at every bar close, its decisions filled by the "
         "backtest's execution model in a paper ledger; replay over stored bars; compare live "
         "with the backtest.",
    no_args_is_help=True)
paper_app.command("run")(run_command)
paper_app.command("replay")(replay_command)
paper_app.command("compare")(compare_command)

if __name__ == "__main__":  # = `huracan paper`; without a command: usage, exit 2
    from huracan.commands import run_app

    run_app(paper_app)
