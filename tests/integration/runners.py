"""Running Huracan's Hydra apps as commands in tests (imported by the test modules beside it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

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
