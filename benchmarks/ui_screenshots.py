"""Screenshots of the MLflow UI for the docs (docs/images/ui/*.png, shown in
docs/how-to/compare-runs.md): the runs view, the sweep's parent run, a job's equity plot, Compare
and the registered model, taken the way tests/integration/test_mlflow_ui_browser.py walks the UI
(same helpers: tests/integration/mlflow_ui.py): a fresh tiny lightgbm+xgboost sweep, ``mlflow ui``
on its SQLite store, Debian's Chromium (or ``HURACAN_CHROMIUM``) driven by Playwright, 1440x900.

    PYTHONPATH=. python benchmarks/ui_screenshots.py [--out docs/images/ui]

Exits 2 when no Chromium binary is found. Prints each page's load time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import mlflow_ui as ui  # noqa: E402  tests/integration/mlflow_ui.py

SHOTS = ("runs-view", "parent-run", "equity", "compare", "registered-model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "ui")
    args = parser.parse_args(argv)
    chromium = ui.chromium_path()
    if chromium is None:
        print("no Chromium: apt-get install -y chromium, or set HURACAN_CHROMIUM", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="huracan-ui-") as tmp_s:
        tmp = Path(tmp_s)
        store = ui.run_sweep(tmp)
        sweep = ui.read_sweep(store)
        with ui.serve_ui(store, tmp / "ui.log") as base, ui.chromium_page(chromium) as page:
            visits = ui.tour(ui.UiTour(page, base, tmp / "shots"), sweep)
        args.out.mkdir(parents=True, exist_ok=True)
        for name in SHOTS:
            shutil.copyfile(tmp / "shots" / f"{name}.png", args.out / f"{name}.png")
            print(f"{name:17s} {visits[name].seconds:5.1f} s  {args.out / f'{name}.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
