"""Running Huracan's Hydra apps as commands in tests (imported by the test modules beside it)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_module(module: str, args: list[str], tmp: Path, timeout: int = 900,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` with its MLflow store and brain store under ``tmp`` (the
    caller's ``MLFLOW_TRACKING_URI`` ignored), from the repository root. A ``-m`` in ``args``
    (multirun) goes last, after every override (Hydra rejects an override placed after it);
    ``env`` adds variables to the child's environment."""
    child = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    child["TF_CPP_MIN_LOG_LEVEL"] = "2"
    child.update(env or {})
    overrides = [a for a in args if a != "-m"]
    multirun = ["-m"] if "-m" in args else []
    cmd = [sys.executable, "-m", module, *overrides, f"tracking.store_dir={tmp / 'mlruns'}",
           f"db.url=sqlite:///{tmp / 'brain.db'}", *multirun]
    return subprocess.run(cmd, cwd=REPO, env=child, capture_output=True, text=True,
                          timeout=timeout)


def wait_for_ping(srv: subprocess.Popen[bytes], base: str, log: Path, t0: float,
                  timeout_s: float = 120.0) -> None:
    """Wait until ``mlflow models serve`` at ``base`` answers ``/ping`` with 200; fail with the
    server's log tail if it exits, or after ``timeout_s`` seconds counted from ``t0``
    (``time.perf_counter()``)."""
    import time
    import urllib.request

    while True:
        assert srv.poll() is None, log.read_text()[-3000:]
        assert time.perf_counter() - t0 < timeout_s, \
            f"server did not answer /ping in {timeout_s:g} s"
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_bytes(url: str, body: dict) -> tuple[int, bytes]:
    """POST ``body`` as JSON to ``url``: ``(HTTP status, raw response body)`` (errors too)."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post_json(url: str, body: dict) -> tuple[int, Any]:
    """:func:`post_bytes` with the response body parsed as JSON."""
    import json

    code, raw = post_bytes(url, body)
    return code, json.loads(raw)


def candle_payload(frame: Any) -> dict:
    """A request frame (raw candles, ``timestamp`` datetimes) in the documented wire format:
    ``{"inputs": <dataframe_split layout>}``, timestamps as ISO-8601 text."""
    import json

    f = frame.assign(timestamp=frame["timestamp"].map(lambda t: t.isoformat()))
    split = json.loads(f.to_json(orient="split", index=False))
    return {"inputs": {"columns": split["columns"], "data": split["data"]}}


@contextlib.contextmanager
def served_model(model_uri: str, tracking_uri: str, tmp: Path,
                 timeout_s: float = 120.0) -> Iterator[tuple[str, float]]:
    """``mlflow models serve -m MODEL_URI`` (local env, registry at ``tracking_uri``, log in
    ``tmp/serve.log``) on a free port: yields ``(base URL, start-up seconds)`` once it answers
    ``/ping``; stopped (terminated, killed after 20 s) on exit."""
    import time

    binary = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PATH": f"{binary}:{os.environ['PATH']}", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    port = free_port()
    log = (tmp / "serve.log").open("w")
    t0 = time.perf_counter()
    srv = subprocess.Popen([str(binary / "mlflow"), "models", "serve", "-m", model_uri,
                            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                           env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(srv, base, tmp / "serve.log", t0, timeout_s)
        yield base, time.perf_counter() - t0
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=20)
        except subprocess.TimeoutExpired:
            srv.kill()
        log.close()
