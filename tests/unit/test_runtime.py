"""The process defaults every Hydra app sets (:mod:`huracan.runtime`): set when absent, never
over a user's value, and set by each app before any other import (OpenMP reads
``OMP_WAIT_POLICY`` when its runtime loads, TensorFlow its log level when it loads)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from huracan import runtime

APPS = ["train", "tune", "sizer", "nightly"]
PACKAGE = Path(runtime.__file__).parent


def test_defaults_fill_only_what_is_unset(monkeypatch):
    for key in runtime.APP_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    runtime.set_app_defaults()
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "active"  # the user's value wins
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


@pytest.mark.parametrize("app", APPS)
def test_each_app_imports_the_defaults_before_anything_else(app):
    tree = ast.parse((PACKAGE / f"{app}.py").read_text())
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    first = imports[0]
    assert isinstance(first, ast.Import) and first.names[0].name == "huracan.runtime", (
        f"huracan/{app}.py line {first.lineno}: the first import must be huracan.runtime")
