"""The brain store: domain tables in Postgres (SQLite as the embedded default).

Modules: ``tables`` (typed models) · ``session`` (``make_engine``, URL masking) · ``migrate``
(Alembic, packaged scripts, own version table) · ``ingest`` (read and validate files, load
them) · ``upsert`` (COPY bulk path, executemany) · ``partitions`` (monthly liquidation
partitions on Postgres) · ``queries`` (read API) · ``records`` (feature importance, registry
events) · ``quality`` (``DbQualitySink``) · ``cli`` (``huracan db|ingest``).
"""
