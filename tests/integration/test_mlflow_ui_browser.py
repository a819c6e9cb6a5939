"""The MLflow UI as a Huracan user sees it, in Debian's Chromium driven by Playwright
(``executable_path``: no browser download), against ``mlflow ui`` on a fresh two-model sweep
(helpers in tests/integration/mlflow_ui.py, shared with benchmarks/ui_screenshots.py).

Checked: the runs view opens on the sweep (not the GenAI overview), the parent run lists its jobs,
a job's SHAP and equity plots load in the artifact viewer, the registered model page shows the
production alias the gate set, and no console error or page error beyond MLflow's own known
ones (``KNOWN_CONSOLE_ERRORS``, each with its reason). Skipped, with the reason, only where no
Chromium binary is found (``.ci/run`` installs Debian's ``chromium`` when apt is available).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow_ui import (
    KNOWN_CONSOLE_ERRORS,
    ML_VIEW,
    Sweep,
    UiTour,
    Visit,
    artifact_image,
    chromium_page,
    chromium_path,
    read_sweep,
    run_sweep,
    serve_ui,
    tour,
)

pytestmark = pytest.mark.slow

CHROMIUM = chromium_path()
GENAI_OVERVIEW = "Token Usage"  # a heading of MLflow's GenAI overview, absent from the runs view


@dataclass
class Toured:
    sweep: Sweep
    visits: dict[str, Visit]
    tour: UiTour
    bare_landing: str  # the page text of #/experiments/<id> (the experiments list's link)
    ml_landing: str  # the page text of #/experiments/<id>?workflowType=machine_learning


@pytest.fixture(scope="module")
def toured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toured]:
    if CHROMIUM is None:
        pytest.skip("no Chromium binary (/usr/bin/chromium, chromium on PATH, HURACAN_CHROMIUM); "
                    "`apt-get install -y chromium` provides it (.ci/run does where apt exists)")
    pytest.importorskip("playwright", reason="playwright is in the dev extra: "
                                             "pip install -e '.[dev]'")
    tmp = tmp_path_factory.mktemp("mlflow_ui")
    t0 = time.monotonic()
    store = run_sweep(tmp)
    sweep = read_sweep(store)
    t_sweep = time.monotonic() - t0
    with serve_ui(store, tmp / "ui.log") as base, chromium_page(CHROMIUM) as page:
        t1 = time.monotonic()
        ui = UiTour(page, base)
        visits = tour(ui, sweep)
        either = re.compile(f"{GENAI_OVERVIEW}|sweep-BTCUSDT-1h")
        bare = ui.visit("bare-link", f"/experiments/{sweep.experiment_id}", either).text
        ml = ui.visit("ml-link", f"/experiments/{sweep.experiment_id}?{ML_VIEW}", either).text
        print(f"\nsweep {t_sweep:.1f} s; browser tour {time.monotonic() - t1:.1f} s; page loads: "
              + ", ".join(f"{k} {v.seconds:.1f} s" for k, v in visits.items()))
        yield Toured(sweep, visits, ui, bare, ml)


def test_runs_view_opens_on_the_sweep_not_genai(toured: Toured):
    runs = toured.visits["runs-view"]  # #/experiments/<id>/runs, the docs' link
    assert "sweep-BTCUSDT-1h" in runs.text and "Run Name" in runs.text
    assert GENAI_OVERVIEW not in runs.text
    assert re.search(r"\b3 matching runs\b", runs.text)  # the parent and its two jobs
    for name in toured.sweep.jobs:  # nested under the parent once "Expand rows" is on
        assert name in runs.text, name
    # the same with the workflow type in the link
    assert GENAI_OVERVIEW not in toured.ml_landing and "sweep-BTCUSDT-1h" in toured.ml_landing


def test_experiment_is_tagged_model_training(toured: Toured):
    assert toured.sweep.experiment_tags.get("mlflow.experimentKind") == "custom_model_development"


@pytest.mark.xfail(reason="MLflow 3.17.2 picks the landing view from the browser's workflow type "
                          "(default GenAI), not from the experiment tag mlflow.experimentKind: "
                          "the docs link #/experiments/<id>/runs", strict=False)
def test_bare_experiment_link_opens_on_the_runs(toured: Toured):
    assert GENAI_OVERVIEW not in toured.bare_landing
    assert "sweep-BTCUSDT-1h" in toured.bare_landing


def test_parent_run_lists_its_jobs(toured: Toured):
    text = toured.visits["parent-run"].text
    assert "sweep-BTCUSDT-1h" in text
    child_block = text[text.index("Child runs"):]
    for name in toured.sweep.jobs:
        assert name in child_block[:400], name
    assert sorted(n.split("-")[0] for n in toured.sweep.jobs) == ["lightgbm", "xgboost"]


@pytest.mark.parametrize(("visit", "path"), [("shap", "shap/summary.png"),
                                             ("equity", "plots/equity_drawdown_test.png")])
def test_job_plot_loads_in_the_artifact_viewer(toured: Toured, visit: str, path: str):
    v = toured.visits[visit]
    assert path in v.text
    img = artifact_image(v)
    assert img is not None, f"no loaded image on {v.url}: {v.images}"
    assert img["w"] >= 400 and img["h"] >= 300  # the PNG itself, not an icon


def test_compare_shows_both_jobs(toured: Toured):
    text = toured.visits["compare"].text
    assert re.search(r"Comparing 2 Runs from 1 Experiment", text)
    for name in toured.sweep.jobs:
        assert name in text


def test_registered_model_page_shows_production(toured: Toured):
    text = toured.visits["registered-model"].text
    assert "huracan-BTCUSDT-1h" in text
    assert re.search(r"@\s*production\b", text), "no production alias chip on the model page"
    assert f"Version {toured.sweep.production_version}" in text


def test_no_console_error_beyond_mlflows_known_ones(toured: Toured):
    ui = toured.tour
    assert ui.page_errors == []
    assert ui.unexpected_console_errors() == []
    assert all(reason for _, reason in KNOWN_CONSOLE_ERRORS)


def test_pages_load_within_a_budget(toured: Toured):
    slow = {k: round(v.seconds, 1) for k, v in toured.visits.items() if v.seconds > 30}
    assert not slow, slow  # seconds to the key text: 1.5-3 s idle, up to 16 s on a busy host


def test_chromium_lookup_prefers_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HURACAN_CHROMIUM", str(fake))
    assert chromium_path() == str(fake)
