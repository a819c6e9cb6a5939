#!/bin/sh
# Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d): creates
# one database per consumer, each owned by $POSTGRES_USER. MLflow and Optuna both keep an
# `alembic_version` table and cannot share one database; the brain store (version table
# `huracan_alembic_version`) could, but its own database keeps backups and grants apart.
#   HURACAN_DB_NAME  brain store (HURACAN_DB_URL): domain tables, registry_events, ...
#   OPTUNA_DB_NAME   Optuna RDB storage (tune.storage): studies shared by tuning workers
#   MLFLOW_DB_NAME   MLflow backend + model registry store (mlflow server --backend-store-uri)
# Idempotent: an existing database is left alone. Also usable against any server by setting
# PGHOST/PGPORT/PGPASSWORD and the variables above.
set -eu
: "${POSTGRES_USER:?POSTGRES_USER is not set}"
for db in "${HURACAN_DB_NAME:?HURACAN_DB_NAME is not set}" \
          "${OPTUNA_DB_NAME:?OPTUNA_DB_NAME is not set}" \
          "${MLFLOW_DB_NAME:?MLFLOW_DB_NAME is not set}"; do
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
         -v db="$db" -v owner="$POSTGRES_USER" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
    echo "init-databases: database $db ready"
done
