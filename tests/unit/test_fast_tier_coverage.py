"""The check that the fast tier imports every module of huracan/ (``make test`` passes
``--check-imports``; tests/tier_imports.py): what it lists, what counts as imported, and that a
session leaving modules out fails naming them."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

from tier_imports import (
    PACKAGE,
    imported_files,
    missing_files,
    package_files,
    track_loader_executions,
)

REPO = Path(__file__).resolve().parents[2]


def test_every_source_file_is_listed_migrations_included():
    files = package_files()
    assert {"huracan/__init__.py", "huracan/pipeline.py", "huracan/db/migrate.py"} <= files
    assert any(f.startswith("huracan/db/migrations/versions/0001_") for f in files)
    assert all(f.endswith(".py") and "__pycache__" not in f for f in files)
    empty = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py")
             if not p.read_text().strip()}
    assert files == {p.relative_to(PACKAGE.parent).as_posix()
                     for p in PACKAGE.rglob("*.py")} - empty


def test_a_module_counts_by_the_file_it_was_loaded_from(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py"):
        (pkg / f).write_text("X = 1\n")
    (pkg / "sub" / "empty.py").write_text("")  # nothing to run: not listed
    (pkg / "notes.txt").write_text("")
    # any name: Alembic loads its scripts by path under names of its own
    loaded = {"pkg": types.SimpleNamespace(__file__=str(pkg / "__init__.py")),
              "_b_py_0001": types.SimpleNamespace(__file__=str(pkg / "sub" / "b.py")),
              "builtin": types.SimpleNamespace(),  # no __file__
              "other": types.SimpleNamespace(__file__=str(tmp_path / "elsewhere.py"))}
    got = imported_files(pkg, loaded, executed=set())
    assert got == {"pkg/__init__.py", "pkg/sub/b.py"}
    assert missing_files(got, pkg) == ["pkg/a.py", "pkg/sub/__init__.py"]


def test_migrations_alembic_executes_by_path_count_as_imported(tmp_path):
    from huracan.db import migrate
    from huracan.db.session import make_engine

    versions = {f for f in package_files() if "/migrations/versions/0" in f}
    assert not versions & imported_files(executed=set())  # never in sys.modules
    track_loader_executions()
    eng = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    migrate.upgrade(eng)
    eng.dispose()
    assert versions and versions <= imported_files()


def test_a_session_that_leaves_modules_out_fails_naming_them():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--check-imports",
         "tests/unit/test_fast_tier_coverage.py::test_every_source_file_is_listed_migrations_included"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    assert "modules no test of this session imported" in proc.stdout
    assert "huracan/sizer.py" in proc.stdout and "huracan/tune.py" in proc.stdout
