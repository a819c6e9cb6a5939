"""Serving latency of ``mlflow models serve`` with the prediction log off and on (issue 24).

Trains the production test model (tests/integration/paper_model.py: a 20-tree LightGBM on real
BTC/USDT 1h candles, ~7 s), then, one server at a time on loopback, sends ``--requests``
raw-candle requests of the model's warm-up + ``--answered`` bars (sliding windows over unseen
bars, so every request is new and stores its own inputs file) over one keep-alive connection
and times each round trip (client side: JSON encode excluded, decode included). Cases, run one
after the other minutes apart, in this order:

- ``off``: ``HURACAN_PREDICTION_LOG`` unset;
- ``sqlite``: the log on, a SQLite brain store on local disk;
- ``postgres``: the log on, a fresh database on ``--pg-url``'s server (skipped when unreachable);
- ``outage``: the log on a SQLite store whose directory is moved away before the requests
  (every write fails: rows wait in memory) and moved back after them; then the rows written
  once the store is back, and the writer's counters (read from its close line at exit);
- ``off-again``: the log off again (how much the machine drifted meanwhile).

Prints a table (p50 / p99 / mean in ms, rows written / pending / dropped) and, with ``--json``,
writes it. ``uptime`` is printed before and after.

    PYTHONPATH=$PWD python benchmarks/serving_latency.py [--requests 1000] [--answered 200]
        [--pg-url postgresql+psycopg2://postgres@127.0.0.1:5432/test] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
BIN = Path(sys.executable).parent
#: unseen bars (the model trained on 2019-01..04)
FROM = pd.Timestamp("2019-06-01", tz="UTC")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _payload(frame: pd.DataFrame) -> bytes:
    f = frame.assign(timestamp=frame["timestamp"].map(lambda t: t.isoformat()))
    split = json.loads(f.to_json(orient="split", index=False, double_precision=15))
    return json.dumps({"inputs": {"columns": split["columns"], "data": split["data"]}}).encode()


class Server:
    """``mlflow models serve`` of the production model in its own process group."""

    def __init__(self, pm: Any, tmp: Path, name: str, extra: dict[str, str]) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("HURACAN_PREDICTION_LOG", "HURACAN_PREDICTION_INPUTS")}
        env.update({"MLFLOW_TRACKING_URI": pm.tracking_uri, "PATH": f"{BIN}:{env['PATH']}",
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **extra})
        self.log = tmp / f"serve-{name}.log"
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{pm.name}@production",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(self.port)], env=env,
            cwd=tmp, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            if time.monotonic() - t0 > 180:
                raise RuntimeError("server did not answer /ping in 180 s")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            time.sleep(0.2)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def post(self, body: bytes) -> list[dict[str, Any]]:
        self.conn.request("POST", "/invocations", body=body,
                          headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
        return json.loads(data)["predictions"]

    def stop(self) -> str:
        """SIGINT the group (uvicorn shuts down, then KeyboardInterrupt: the log's atexit drain
        runs; SIGTERM would skip it); its log."""
        self.conn.close()
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                                  capture_output=True, text=True).stdout.split()
        for pid in children:  # uvicorn, under mlflow's CLI: interrupt it alone first
            os.kill(int(pid), signal.SIGINT)
        deadline = time.monotonic() + 20
        while children and time.monotonic() < deadline and any(
                Path(f"/proc/{pid}").exists() for pid in children):
            time.sleep(0.1)
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 20  # uvicorn runs in a child: wait for the group
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        return self.log.read_text()


def _time(server: Server, payloads: list[bytes], warm: int = 20) -> np.ndarray:
    for body in payloads[:warm]:
        server.post(body)
    out = np.empty(len(payloads))
    for i, body in enumerate(payloads):
        t0 = time.perf_counter()
        server.post(body)
        out[i] = time.perf_counter() - t0
    return out * 1e3


def _count(url: str) -> int:
    from sqlalchemy import func, select

    from huracan.db.session import make_engine
    from huracan.db.tables import Prediction

    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Prediction)).scalar_one())
    finally:
        eng.dispose()


def _migrated_sqlite(path: Path) -> str:
    from huracan.db import migrate
    from huracan.db.session import make_engine

    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    eng = make_engine(url)
    migrate.upgrade(eng)
    eng.dispose()
    return url


def _fresh_pg(admin_url: str) -> tuple[str, str] | None:
    """A fresh migrated database on ``admin_url``'s server: ``(url, name)``; None when the
    server cannot be reached."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from huracan.db import migrate
    from huracan.db.session import make_engine

    name = f"predlog_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
    except Exception as exc:
        print(f"postgres: skipped ({type(exc).__name__})")
        return None
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    migrate.upgrade(eng)
    eng.dispose()
    return url, name


def _drop_pg(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _closed_stats(text: str) -> dict[str, Any]:
    found = re.findall(r"prediction log closed: (\{.*\})", text)
    return json.loads(found[-1]) if found else {}


def _wait_rows(url: str, n: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    got = 0
    while time.monotonic() < deadline:
        try:
            got = _count(url)
        except Exception:
            got = 0
        if got >= n:
            break
        time.sleep(0.5)
    return got


def _case(pm: Any, tmp: Path, name: str, payloads: list[bytes], url: str | None,
          outage_dir: Path | None = None) -> dict[str, Any]:
    extra = {} if url is None else {"HURACAN_PREDICTION_LOG": url,
                                    "HURACAN_PREDICTION_INPUTS": str(tmp / f"inputs-{name}")}
    server = Server(pm, tmp, name, extra)
    away = None
    try:
        if outage_dir is not None:
            server.post(payloads[0])  # the log starts and writes once: the store works
            time.sleep(1.0)
            away = outage_dir.with_name(outage_dir.name + "-away")
            outage_dir.rename(away)
        ms = _time(server, payloads)
        row: dict[str, Any] = {"case": name, "p50_ms": float(np.percentile(ms, 50)),
                               "p99_ms": float(np.percentile(ms, 99)),
                               "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}
        sent = len(payloads) + 20 + (1 if outage_dir is not None else 0)
        if away is not None and outage_dir is not None:
            row["rows_during_outage"] = _count(f"sqlite:///{away / 'brain.db'}")
            away.rename(outage_dir)
        if url is not None:
            row["rows_written"] = _wait_rows(url, sent)
            row["requests_sent"] = sent
    finally:
        if away is not None and away.exists() and outage_dir is not None:
            away.rename(outage_dir)
        text = server.stop()
    if url is not None:
        row["writer"] = _closed_stats(text)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--answered", type=int, default=200)
    ap.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from paper_model import train_production

    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout
          .strip())
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores")
    tmp = Path(tempfile.mkdtemp(prefix="serving-latency-"))
    pg: tuple[str, str] | None = None
    try:
        t0 = time.perf_counter()
        pm = train_production(tmp)
        print(f"trained {pm.name} v{pm.version} in {time.perf_counter() - t0:.1f} s")
        unseen = pm.candles[pm.candles["timestamp"] >= FROM].reset_index(drop=True)
        probe = Server(pm, tmp, "probe", {})
        warmup = 400 - len(probe.post(_payload(unseen.iloc[:400])))
        probe.stop()
        bars = warmup + args.answered
        payloads = [_payload(unseen.iloc[i: i + bars]) for i in range(args.requests)]
        print(f"{args.requests} requests of {bars} bars ({args.answered} answered)")
        rows = [_case(pm, tmp, "off", payloads, None)]
        rows.append(_case(pm, tmp, "sqlite", payloads,
                          _migrated_sqlite(tmp / "store-sqlite" / "brain.db")))
        pg = _fresh_pg(args.pg_url)
        if pg is not None:
            rows.append(_case(pm, tmp, "postgres", payloads, pg[0]))
        outage = tmp / "store-outage"
        rows.append(_case(pm, tmp, "outage", payloads, _migrated_sqlite(outage / "brain.db"),
                          outage_dir=outage))
        rows.append(_case(pm, tmp, "off-again", payloads, None))
    finally:
        if pg is not None:
            _drop_pg(args.pg_url, pg[1])
        shutil.rmtree(tmp, ignore_errors=True)
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout
          .strip())
    print(f"\n{'case':<10} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>8} {'max ms':>7}  "
          "rows written/sent  writer (written, pending, dropped, failed attempts)")
    for r in rows:
        w = r.get("writer") or {}
        rows_txt = f"{r['rows_written']}/{r['requests_sent']}" if "rows_written" in r else "-"
        if "rows_during_outage" in r:
            rows_txt += f" ({r['rows_during_outage']} during)"
        writer = (f"{w.get('written')}, {w.get('pending')}, {w.get('dropped')}, "
                  f"{w.get('failed_attempts')}") if w else "-"
        print(f"{r['case']:<10} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['mean_ms']:8.1f} "
              f"{r['max_ms']:7.1f}  {rows_txt:>17}  {writer}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
