"""The fast tier touches every module: which of ``huracan/``'s source files a test session
imported, and the ``--check-imports`` plugin that fails a session leaving some out.

Imported means: the file's code was executed as a module in the pytest process (or, under
pytest-xdist, in any worker): a module in ``sys.modules`` at session end whose ``__file__`` is
that file, or a file a :class:`~importlib.machinery.SourceFileLoader` executed during the session
(:func:`track_loader_executions`: Alembic executes the migration scripts by path and keeps them
out of ``sys.modules``). A module that only a subprocess imports (``python -m huracan.train`` in a
test) does not count, so every module needs an in-process test. No coverage tool: an import is
what is checked, not lines.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "huracan"
#: key of the xdist worker output carrying the worker's imported files
WORKER_KEY = "huracan_imported_files"
#: source files executed by a SourceFileLoader since :func:`track_loader_executions`
EXECUTED: set[str] = set()


def track_loader_executions() -> None:
    """Record in :data:`EXECUTED` the path of every source file a ``SourceFileLoader`` executes
    from now on (every ``import`` of a ``.py`` file, and ``spec.loader.exec_module`` as Alembic
    does). Idempotent."""
    from importlib.machinery import SourceFileLoader

    original = SourceFileLoader.exec_module
    if getattr(original, "_records_executions", False):
        return

    def exec_module(self: SourceFileLoader, module: object) -> None:
        EXECUTED.add(str(self.path))
        original(self, module)  # type: ignore[arg-type]

    exec_module._records_executions = True  # type: ignore[attr-defined]
    SourceFileLoader.exec_module = exec_module  # type: ignore[method-assign]


def package_files(package: Path = PACKAGE) -> set[str]:
    """Every ``.py`` source file of the package that has a statement to run, as paths relative
    to its parent (``huracan/db/migrate.py``); an empty file (such as the ``__init__.py`` of the
    migrations folder, which Alembic never imports) has nothing to touch and is left out."""
    return {p.relative_to(package.parent).as_posix() for p in package.rglob("*.py")
            if "__pycache__" not in p.parts and ast.parse(p.read_text()).body}


def imported_files(package: Path = PACKAGE, modules: dict | None = None,
                   executed: set[str] | None = None) -> set[str]:
    """The package's source files that some module in ``modules`` (default ``sys.modules``)
    was loaded from, or that are in ``executed`` (default :data:`EXECUTED`), relative to the
    package's parent."""
    root = package.resolve()
    mods = sys.modules if modules is None else modules
    files = [getattr(m, "__file__", None) for m in list(mods.values())]
    files += sorted(EXECUTED if executed is None else executed)
    out: set[str] = set()
    for f in files:
        if not f:
            continue
        path = Path(f).resolve()
        if path.suffix == ".py" and path.is_relative_to(root):
            out.add(path.relative_to(root.parent).as_posix())
    return out


def missing_files(imported: set[str], package: Path = PACKAGE) -> list[str]:
    """Source files of the package that no test imported, sorted."""
    return sorted(package_files(package) - imported)


class ImportCheck:
    """``--check-imports``: at session end, fail (exit status 1) naming the modules of
    ``huracan/`` that no test of the session imported. Under xdist each worker sends its
    imported files to the controller, which checks their union."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.from_workers: set[str] = set()
        if self._enabled():
            track_loader_executions()

    def _enabled(self) -> bool:
        return bool(self.config.getoption("check_imports"))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        self.from_workers |= set(getattr(node, "workeroutput", {}).get(WORKER_KEY, ()))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self._enabled():
            return
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller checks
            workeroutput[WORKER_KEY] = sorted(imported_files())
            return
        if session.testsfailed or exitstatus != 0:
            return  # the run failed already; the import check says nothing more
        missing = missing_files(imported_files() | self.from_workers)
        self.missing = missing
        if missing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        missing = getattr(self, "missing", None)
        if missing is None:
            return
        if missing:
            terminalreporter.write_sep("=", "modules no test of this session imported",
                                       red=True)
            for f in missing:
                terminalreporter.write_line(f"  {f}")
            terminalreporter.write_line("add a test of this tier that imports each "
                                        "(--check-imports, tests/tier_imports.py)")
        else:
            terminalreporter.write_line(
                f"import check: all {len(package_files())} modules of huracan/ imported")
