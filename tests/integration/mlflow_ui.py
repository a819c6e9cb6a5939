"""The MLflow UI in a real browser (imported by test_mlflow_ui_browser.py and
benchmarks/ui_screenshots.py): a tiny two-model sweep into a SQLite store, ``mlflow ui`` on it, and
Debian's Chromium driven by Playwright (``executable_path``: no browser download) through the pages
a Huracan user reads: the runs view, the sweep's parent run, a job's SHAP and equity plots, Compare
and the registered model.

MLflow 3.17.2's landing view: ``#/experiments/<id>/runs`` (the docs' link) opens the runs table;
the bare ``#/experiments/<id>`` opens the GenAI overview unless the browser's *workflow type* is
"machine_learning": the URL query ``workflowType=machine_learning`` or the "Model training" switch,
which the browser remembers (localStorage ``mlflow.workflowType``). The experiment tag
``mlflow.experimentKind`` is not what picks it in 3.17.2 (the UI's ``main.*.js`` derives the kind
from the workflow type behind a flag that is always on).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "huracan" / "datasets" / "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
MODEL_NAME = "huracan-BTCUSDT-1h"
ML_VIEW = "workflowType=machine_learning"
VIEWPORT = {"width": 1440, "height": 900}
PAGE_TIMEOUT_MS = 30_000
# the runs table's "+" before a parent run's name: shows its jobs nested under it
EXPAND_PARENT = "[role=row] button.du-bois-light-btn-link"

# Console errors MLflow's own UI logs on a healthy `mlflow ui` (pattern on "url text", reason).
KNOWN_CONSOLE_ERRORS: list[tuple[str, str]] = [
    (r"/ajax-api/2\.0/mlflow/users/current\b.*status of 404",
     "the UI asks who the current user is (for the sidebar's account menu); `mlflow ui` runs "
     "without the basic-auth app, which is the only one serving that endpoint"),
    (r"ResizeObserver loop completed with undelivered notifications",
     "the runs table (AG Grid) resizes its columns inside a ResizeObserver callback when rows "
     "expand; Chromium reports the deferred notifications as an error, nothing fails to draw"),
]


def chromium_path() -> str | None:
    """The Chromium binary: ``HURACAN_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else
    ``chromium`` / ``chromium-browser`` on PATH; None when there is none."""
    for cand in (os.environ.get("HURACAN_CHROMIUM"), "/usr/bin/chromium"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_sweep(tmp: Path, timeout: int = 600) -> Path:
    """``python -m huracan.train model=lightgbm,xgboost -m`` (tiny: importance off, 20 SHAP rows)
    on the shipped sample's bars with synthetic edge prices (tests/integration/synthetic.py: a
    candidate beats cash, so the gate promotes and the registry has a production alias), into
    the SQLite store ``tmp/mlruns/mlflow.db`` (artifacts in ``tmp/mlruns/artifacts``). Returns the
    store's path; raises RuntimeError with the log tail if the sweep fails."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synthetic import edge_like_sample

    data = edge_like_sample(SAMPLE, tmp / "edge_5m.parquet")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "HURACAN_DB_URL"))}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    cmd = [sys.executable, "-m", "huracan.train", "model=lightgbm,xgboost",
           "importance.enabled=false", f"data.path={data}", "explain.max_rows=20",
           f"tracking.store_dir={tmp / 'mlruns'}", f"db.url=sqlite:///{tmp / 'brain.db'}",
           f"data.quality_log={tmp / 'dq.jsonl'}", f"hydra.run.dir={tmp / 'outputs'}",
           f"hydra.sweep.dir={tmp / 'multirun'}", "-m"]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"sweep failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return tmp / "mlruns" / "mlflow.db"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_ui(store: Path, log: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """``mlflow ui`` on a free port of 127.0.0.1 against the SQLite ``store``; yields its base URL
    once ``GET /health`` answers 200 (RuntimeError with the log tail otherwise); stops the
    server's process group on exit."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    with log.open("wb") as fh:
        srv = subprocess.Popen([str(mlflow_bin), "ui", "--backend-store-uri",
                                f"sqlite:///{store}", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "1"], cwd=store.parent, stdout=fh,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while True:
            if srv.poll() is not None or time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"mlflow ui not healthy: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        yield base
    finally:
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGTERM)
            try:
                srv.wait(timeout=5)  # uvicorn waits on open keep-alive connections
            except subprocess.TimeoutExpired:
                os.killpg(srv.pid, signal.SIGKILL)
                srv.wait(timeout=10)


@dataclass
class Sweep:
    """The ids the pages need, read from the store with MlflowClient."""

    experiment_id: str
    parent_id: str
    jobs: dict[str, str]  # run name -> run id
    production_version: str
    experiment_tags: dict[str, str]


def read_sweep(store: Path) -> Sweep:
    """The sweep's experiment, parent run, jobs and production version from ``store``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    exp = client.get_experiment_by_name("huracan")
    assert exp is not None, "no huracan experiment in the store"
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("huracan.role") == "sweep"]
    jobs = {r.info.run_name: r.info.run_id for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    prod = client.get_model_version_by_alias(MODEL_NAME, "production")
    return Sweep(exp.experiment_id, parent.info.run_id, jobs, str(prod.version), dict(exp.tags))


@dataclass
class Visit:
    """What one page showed: its text, load time, the images it displayed."""

    name: str
    url: str
    seconds: float
    text: str
    images: list[dict[str, Any]] = field(default_factory=list)


class UiTour:
    """One headless Chromium page walking the UI, collecting console errors and page errors.
    ``shots``: directory for a PNG per visited page (None: no screenshots)."""

    def __init__(self, page: Any, base: str, shots: Path | None = None) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.set_default_timeout(PAGE_TIMEOUT_MS)

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.location.get('url', '')} {msg.text}")

    def unexpected_console_errors(self) -> list[str]:
        """Console errors that match no entry of :data:`KNOWN_CONSOLE_ERRORS`."""
        return [e for e in self.console_errors
                if not any(re.search(p, e) for p, _ in KNOWN_CONSOLE_ERRORS)]

    def visit(self, name: str, route: str, wait_text: str | re.Pattern[str],
              then: str | None = None, scroll_to: str | None = None) -> Visit:
        """Open ``base/#route``, wait until ``wait_text`` is visible, hide the assistant panel,
        click the first element matching the Playwright selector ``then`` if given, scroll the
        first match of ``scroll_to`` to the top if given, let the page settle, screenshot when
        asked; the page's text and its images (``naturalWidth`` 0 = not loaded). Raises
        playwright's TimeoutError after ``PAGE_TIMEOUT_MS``."""
        t0 = time.monotonic()
        self.page.goto("about:blank")  # a full load each time (a hash change alone can keep
        self.page.goto(f"{self.base}/#{route}")  # the previous artifact selected)
        self.page.get_by_text(wait_text).first.wait_for(state="visible")
        seconds = time.monotonic() - t0
        self._close_assistant()
        if then is not None:
            self.page.locator(then).first.click()
        if scroll_to is not None:
            self.page.locator(scroll_to).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        self.page.wait_for_timeout(800)  # charts and images settle
        images = self.page.eval_on_selector_all(
            "img", "els => els.map(e => ({src: e.src.slice(0, 60), w: e.naturalWidth, "
                   "h: e.naturalHeight, complete: e.complete}))")
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.shots / f"{name}.png"))
        return Visit(name, self.page.url, seconds, self.page.inner_text("body"), images)

    def _close_assistant(self) -> None:
        """Close the "MLflow Assistant" side panel if it is open (it takes a third of the page)."""
        close = self.page.get_by_role("button", name="Close", exact=True)
        if close.count() and close.first.is_visible():
            close.first.click()


def artifact_image(visit: Visit) -> dict[str, Any] | None:
    """The artifact viewer's image (a ``blob:`` URL) on ``visit``, if one loaded."""
    loaded = [i for i in visit.images if i["src"].startswith("blob:") and i["w"] > 0]
    return loaded[0] if loaded else None


@contextlib.contextmanager
def chromium_page(executable: str) -> Iterator[Any]:
    """A fresh headless Chromium page (no stored state), 1440x900."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser.new_context(viewport=VIEWPORT).new_page()
        finally:
            browser.close()


def tour(tour_: UiTour, sweep: Sweep) -> dict[str, Visit]:
    """Every page the docs show, in a user's order: runs view, parent run, a job's SHAP and
    equity plots, Compare of the jobs, the registered model."""
    exp, job_ids = sweep.experiment_id, list(sweep.jobs.values())
    job = job_ids[0]
    runs_json = ",".join(f'"{r}"' for r in job_ids)
    return {
        "runs-view": tour_.visit("runs-view", f"/experiments/{exp}/runs", "sweep-BTCUSDT-1h",
                                 then=EXPAND_PARENT),
        "parent-run": tour_.visit("parent-run", f"/experiments/{exp}/runs/{sweep.parent_id}"
                                  f"?{ML_VIEW}", next(iter(sweep.jobs))),  # child runs load last
        "shap": tour_.visit("shap", f"/experiments/{exp}/runs/{job}/artifacts/shap/summary.png",
                            "shap/summary.png"),
        "equity": tour_.visit("equity", f"/experiments/{exp}/runs/{job}/artifacts/plots/"
                              "equity_drawdown_test.png", "plots/equity_drawdown_test.png"),
        "compare": tour_.visit("compare", f'/compare-runs?runs=[{runs_json}]&experiments=["{exp}"]',
                               re.compile(r"Comparing \d+ Runs")),
        "registered-model": tour_.visit(  # scrolled to the production version's row
            "registered-model", f"/models/{MODEL_NAME}", "Versions",
            scroll_to=f'text="Version {sweep.production_version}"'),
    }
