"""Paper trading: production asked bar by bar, its decisions filled in a paper ledger by the one
execution model (:mod:`huracan.evaluation.execution`), live (``huracan paper run``) or over
stored bars (``huracan paper replay``), and compared with the backtest (``huracan paper
compare``).

Modules: :mod:`~huracan.paper.ledger` (the paper tables: accounts, orders, fills, marks),
:mod:`~huracan.paper.production` (whom the loop asks: the registered model in process, or an
HTTP endpoint), :mod:`~huracan.paper.loop` (one bar's step: fill, mark, decide; replay),
:mod:`~huracan.paper.live` (waiting for bar closes, downloading, staleness, backoff),
:mod:`~huracan.paper.compare` (live vs backtest, differences by source) and
:mod:`~huracan.paper.monitoring` (the daily MLflow monitoring run, the loop's liveness).
"""
