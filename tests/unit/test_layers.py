"""The package's imports run downhill: no import circle (imports inside functions included) and
at most 2 imports from a lower layer up to a higher one, as ``benchmarks/import_layers.py`` reads
them from the source (layers: its ``LAYERS`` table, the package sketch of the docs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "import_layers.py"
MAX_UPWARD = 2


def _layers():
    spec = importlib.util.spec_from_file_location("import_layers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_layers", module)
    spec.loader.exec_module(module)
    return module


def test_no_import_circle():
    report = _layers().report()
    assert report["circles"] == []


def test_at_most_two_upward_imports():
    report = _layers().report()
    assert len(report["upward_imports"]) <= MAX_UPWARD, report["upward_imports"]


def test_the_reader_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The guard can fail: a two-module package importing each other, the lower one upward."""
    layers = _layers()
    pkg = tmp_path / "huracan"
    (pkg / "db").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "db" / "__init__.py").write_text("")
    (pkg / "db" / "low.py").write_text("def f():\n    from huracan import pipeline\n")
    (pkg / "pipeline.py").write_text("from huracan.db import low\n")
    (pkg / "alias.py").write_text('"""Alias: old path."""\n\nfrom huracan.pipeline import x\n')
    monkeypatch.setattr(layers, "ROOT", pkg)
    report = layers.report()
    assert report["circles"] == [["huracan.db.low", "huracan.pipeline"]]
    assert report["upward_imports"] == ["huracan.db.low -> huracan.pipeline"]
    assert report["alias_modules"] == ["huracan.alias"]


MAX_FUNCTION_LINES = 120


def test_no_function_over_120_lines():
    """A function longer than a screenful does several jobs: cut it into named steps (the count
    runs from ``def`` to the last line, docstring included)."""
    report = _layers().report()
    longest = report["longest_functions"][0]
    assert longest["lines"] <= MAX_FUNCTION_LINES, longest
