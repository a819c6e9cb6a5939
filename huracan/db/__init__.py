"""The brain store: domain tables in Postgres (SQLite as the embedded default).

Modules: ``tables`` (typed models) · ``session`` (``make_engine``, URL masking) · ``migrate``
(Alembic, packaged scripts, own version table) · ``upsert`` (COPY bulk path, executemany) ·
``partitions`` (monthly liquidation partitions on Postgres) · ``queries`` (read API) ·
``records`` (feature importance, registry events). Ingest lives beside the data it ingests
(:mod:`huracan.data.ingest`, :mod:`huracan.data.quality_db`; ``ingest`` and ``quality`` here
are aliases), the commands in :mod:`huracan.cli.db` (``huracan db|ingest``).
"""
