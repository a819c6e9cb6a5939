"""deploy/: the team services' compose file, its env examples and the Postgres init script.

The ``docker compose`` plugin is not installed here (and no Docker daemon runs), so the file is
checked without it: parsed as YAML, interpolated with ``deploy/.env.example`` the way Compose
does (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``), validated against the Compose
Specification's JSON Schema (vendored in ``deploy/schema/``), and checked for what Huracan needs
(services, healthchecks, ports, MLflow without job execution, no committed secrets). The init
script runs for real against the test Postgres server when ``HURACAN_TEST_PG_URL`` is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
INIT_SCRIPT = DEPLOY / "postgres" / "init-databases.sh"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}; "$$" escapes a "$"
VAR = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN", re.IGNORECASE)


def _env_file(path: Path) -> dict[str, str]:
    dotenv = pytest.importorskip("dotenv")
    values = dotenv.dotenv_values(path, interpolate=False)
    return {k: "" if v is None else v for k, v in values.items()}


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of ``text`` with ``env``; raises KeyError on a ``:?`` miss."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        value = env.get(name)
        if (op in (":-", ":?") and not value) or (op in ("-", "?") and value is None):
            if op and op.endswith("?"):
                raise KeyError(f"{name}: {arg}")
            return arg or ""
        return value or ""

    return VAR.sub(sub, text).replace("$$", "$")


def _interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    """:func:`_interpolate` on every string value of a parsed compose file (comments are gone)."""
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    return _interpolate(node, env) if isinstance(node, str) else node


def _variables(node: Any) -> list[re.Match[str]]:
    """Every ``${...}`` reference in the string values of a parsed compose file."""
    if isinstance(node, dict):
        return [m for v in node.values() for m in _variables(v)]
    if isinstance(node, list):
        return [m for v in node for m in _variables(v)]
    return list(VAR.finditer(node)) if isinstance(node, str) else []


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The compose file as written (before interpolation)."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _env_file(DEPLOY / ".env.example")


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as Compose sees it with deploy/.env copied from .env.example."""
    return _interpolate_tree(raw, env_example)


def test_yaml_parses_and_validates_against_the_compose_schema(raw, compose):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for doc in (raw, compose):  # before and after interpolation
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == []
    assert set(compose["services"]) == {"postgres", "minio", "minio-init", "mlflow", "paper"}
    # the schema catches misspelt keys: prove it does with one
    bad = yaml.safe_load(COMPOSE.read_text())
    bad["services"]["mlflow"]["healthchek"] = bad["services"]["mlflow"].pop("healthcheck")
    assert not validator.is_valid(bad)


def test_every_variable_is_in_env_example_and_every_example_is_used(raw, env_example):
    used = {m.group("name") for m in _variables(raw)}
    assert used - set(env_example) == set(), "variables missing from deploy/.env.example"
    compose_own = {k for k in env_example if k.startswith("COMPOSE_")}  # read by Compose itself
    assert set(env_example) - used - compose_own == set(), "stale entries in deploy/.env.example"
    assert all(env_example.values()), "every example variable has a value"
    # an empty environment fails on the required ones instead of starting with blank secrets
    with pytest.raises(KeyError, match=r"POSTGRES_USER|POSTGRES_PASSWORD|MINIO_ROOT"):
        _interpolate_tree(raw, {})


def test_no_secret_is_committed(raw):
    defaults = {m.group("name"): (m.group("op"), m.group("arg")) for m in _variables(raw)}
    secrets = [name for name in defaults if SECRET_KEY.search(name)]
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MLFLOW_S3_SECRET_KEY"} <= set(secrets)
    for name in secrets:  # required, never defaulted
        assert defaults[name][0] == ":?", f"{name} must be ${{{name}:?...}} without a default"
    for svc, spec in raw["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert VAR.fullmatch(str(value)), f"{svc}.{key} holds a literal value"
    assert (DEPLOY / ".gitignore").read_text().split() == [".env", "huracan.env"]


def test_healthchecks_and_start_order(compose):
    svc = compose["services"]
    for name in ("postgres", "minio", "mlflow"):
        hc = svc[name]["healthcheck"]
        assert hc["test"][0] in ("CMD", "CMD-SHELL") and hc["retries"] >= 5, name
    assert "/health" in " ".join(svc["mlflow"]["healthcheck"]["test"])
    assert svc["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert svc["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "minio-init": {"condition": "service_completed_successfully"}}
    init = "\n".join(svc["minio-init"]["command"])
    assert "mc mb --ignore-existing \"local/$MLFLOW_BUCKET\"" in init  # $$ unescaped to $
    assert svc["minio-init"]["environment"]["MLFLOW_BUCKET"] == "mlflow"


def test_mlflow_server_postgres_backend_s3_artifacts_no_jobs(compose, env_example):
    m = compose["services"]["mlflow"]
    env, cmd = m["environment"], m["command"]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert cmd[:2] == ["mlflow", "server"]
    opts = {a: b for a, b in zip(cmd, [*cmd[1:], ""], strict=True)
            if a.startswith("--") and not b.startswith("--")}
    backend = make_url(opts["--backend-store-uri"])
    assert backend.drivername == "postgresql+psycopg2" and backend.host == "postgres"
    assert backend.database == env_example["MLFLOW_DB_NAME"] and backend.password is None
    assert env["PGPASSWORD"] == env_example["POSTGRES_PASSWORD"]  # libpq reads it
    assert opts["--artifacts-destination"] == f"s3://{env_example['MLFLOW_BUCKET']}/artifacts"
    assert "--serve-artifacts" in cmd and opts["--host"] == "0.0.0.0"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == env_example["MLFLOW_S3_ACCESS_KEY"]
    assert "mlflow:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert m["ports"] == [f"127.0.0.1:{env_example['MLFLOW_PORT']}:5000"]
    # the image: the venv's MLflow, plus the Postgres and S3 drivers
    assert m["build"] == {"context": ".", "dockerfile": "Dockerfile.mlflow"}
    docker = (DEPLOY / m["build"]["dockerfile"]).read_text()
    pins = dict(re.findall(r"\b([a-z0-9-]+)==([0-9.]+)", docker))
    assert pins["mlflow"] == version("mlflow") == "3.17.2"
    assert pins["psycopg2-binary"] == version("psycopg2-binary") and "boto3" in pins
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in docker


def test_postgres_three_databases_named_volumes(compose, env_example):
    pg = compose["services"]["postgres"]
    names = [pg["environment"][k] for k in ("HURACAN_DB_NAME", "OPTUNA_DB_NAME", "MLFLOW_DB_NAME")]
    assert len(set(names)) == 3  # MLflow and Optuna both keep an alembic_version table
    assert ("./postgres/init-databases.sh:/docker-entrypoint-initdb.d/10-init-databases.sh:ro"
            in pg["volumes"])
    assert pg["ports"] == [f"127.0.0.1:{env_example['POSTGRES_PORT']}:5432"]
    assert compose["services"]["minio"]["ports"] == [
        f"127.0.0.1:{env_example['MINIO_PORT']}:9000",
        f"127.0.0.1:{env_example['MINIO_CONSOLE_PORT']}:9001"]
    # data lives in named volumes, declared at the top level
    named = {v.split(":", 1)[0] for s in compose["services"].values()
             for v in s.get("volumes", []) if not v.startswith(".")}
    assert named == {"pgdata", "miniodata"} and named == set(compose["volumes"])


def test_huracan_env_points_at_the_compose_services(env_example):
    h = _env_file(DEPLOY / "huracan.env.example")
    assert h["MLFLOW_TRACKING_URI"] == f"http://mlflow-host:{env_example['MLFLOW_PORT']}"
    brain, optuna = make_url(h["HURACAN_DB_URL"]), make_url(h["HURACAN_OPTUNA_STORAGE"])
    for url, db in ((brain, "HURACAN_DB_NAME"), (optuna, "OPTUNA_DB_NAME")):
        assert url.drivername == "postgresql+psycopg2"
        assert url.database == env_example[db]
        assert url.username == env_example["POSTGRES_USER"]
        assert url.port == int(env_example["POSTGRES_PORT"])
    # proxied artifacts: no S3 credentials on the clients (the direct variant stays commented)
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"} & set(h)


def test_make_mlflow_ui_disables_job_execution():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run([make, "-n", "-o", ".venv/.installed-stamp", "mlflow-ui"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    cmd = out.replace("\\\n", " ")
    assert re.search(r"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false\s+\S*mlflow ui", cmd)


@pytest.mark.postgres
def test_init_script_creates_three_databases_idempotently(pg_admin):
    # pg_admin (root conftest): skipped without HURACAN_TEST_PG_URL, failed when it is unreachable
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    admin = pg_admin
    suffix = uuid.uuid4().hex[:10]
    names = {"HURACAN_DB_NAME": f"huracan_init_{suffix}", "OPTUNA_DB_NAME": f"optuna_{suffix}",
             "MLFLOW_DB_NAME": f"mlflow-{suffix}"}  # a hyphen: identifiers must be quoted
    env = {**os.environ, **names, "POSTGRES_USER": admin.username or "postgres",
           "PGHOST": admin.host or "127.0.0.1", "PGPORT": str(admin.port or 5432)}
    if admin.password:
        env["PGPASSWORD"] = admin.password
    query = ["psql", "-Atqd", "postgres", "-c",
             f"SELECT datname FROM pg_database WHERE datname LIKE '%{suffix}' ORDER BY 1"]
    try:
        for _ in range(2):  # a second run leaves the databases alone
            proc = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.count("ready") == 3
        listed = subprocess.run(query, env=env, capture_output=True, text=True, check=True)
        assert listed.stdout.split() == sorted(names.values())
        # a missing name stops the script with one line naming it
        bad = {k: v for k, v in env.items() if k != "OPTUNA_DB_NAME"}
        proc = subprocess.run(["sh", str(INIT_SCRIPT)], env=bad, capture_output=True, text=True)
        assert proc.returncode != 0 and "OPTUNA_DB_NAME is not set" in proc.stderr
    finally:
        for db in names.values():
            subprocess.run(["psql", "-qd", "postgres", "-c",
                            f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'], env=env, check=False)


def _compose_cli() -> list[str] | None:
    """``docker compose`` (the v2 plugin) or ``docker-compose`` (1.29), whichever runs here."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_config_accepts_the_file():
    """Compose's own parser and validator (``config`` needs no Docker daemon)."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    out = subprocess.run([*cli, "-f", str(DEPLOY / "docker-compose.yml"), "--env-file",
                          str(DEPLOY / ".env.example"), "config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for service in ("postgres", "minio", "minio-init", "mlflow"):
        assert f"  {service}:" in out.stdout
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" in out.stdout


def test_paper_service_and_systemd_unit_run_the_paper_loop(compose, env_example):
    """The paper loop as a compose service (profile ``paper``) and a systemd template unit:
    ``huracan paper run`` against the compose stores, restarted always, stopped by SIGTERM."""
    p = compose["services"]["paper"]
    assert p["profiles"] == ["paper"] and p["restart"] == "unless-stopped"
    assert p["command"] == ["huracan", "paper", "run", env_example["PAPER_SYMBOL"],
                            "--timeframe", env_example["PAPER_TIMEFRAME"]]
    url = make_url(p["environment"]["HURACAN_DB_URL"])
    assert (url.host, url.database, url.password) == ("postgres",
                                                      env_example["HURACAN_DB_NAME"], None)
    assert p["environment"]["PGPASSWORD"] == env_example["POSTGRES_PASSWORD"]
    assert p["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert p["depends_on"]["mlflow"] == {"condition": "service_healthy"}
    assert p["stop_signal"] == "SIGTERM" and p["volumes"] == ["./data:/data"]
    docker = (DEPLOY / p["build"]["dockerfile"].removeprefix("deploy/")).read_text()
    assert p["build"]["context"] == ".." and "torch==2.13.0" in docker
    unit = (DEPLOY / "systemd" / "huracan-paper@.service").read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in unit.splitlines()
             if "=" in ln and not ln.startswith("#")}
    assert lines["ExecStart"].split()[1:4] == ["paper", "run", "%I"]
    assert lines["Restart"] == "always" and lines["KillSignal"] == "SIGTERM"
    assert "/deploy/huracan.env" in unit and "[Install]" in unit
