"""Progress bars on long work (walk-forward folds, PPO timesteps, Optuna trials, nightly steps).

A bar is drawn with rich on standard error only when someone is watching: standard error is a
terminal, ``HURACAN_PROGRESS`` is not ``0`` and this is not a worker process (joblib/loky and
multiprocessing workers stay quiet, so side-by-side workers never draw over each other).
Otherwise nothing is printed at all and the cost is that one check: :func:`track` hands back the
iterable itself and :func:`bar` a no-op handle; rich is not even imported.

Bars nest: a bar opened while another is shown (the folds of each Optuna trial) becomes a second
line of the same display and is removed when its block ends.

Bottom layer: imports nothing from :mod:`huracan`.

Usage::

    for fold in progress.track(folds, "walk-forward folds"):
        ...
    with progress.bar("PPO timesteps", total=100_000) as b:
        b.update(completed=steps)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

T = TypeVar("T")
#: environment variable: ``0`` turns every bar off
ENV = "HURACAN_PROGRESS"

_shown: Progress | None = None  # the display of the outermost open bar, if any


def enabled(console: Console | None = None) -> bool:
    """Whether a bar would be drawn: ``HURACAN_PROGRESS`` is not ``0``, this is the main process,
    and ``console`` (default: standard error) is a terminal."""
    if os.environ.get(ENV, "").strip() == "0" or multiprocessing.parent_process() is not None:
        return False
    if console is not None:
        return bool(console.is_terminal)
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class Bar:
    """Handle of one bar: :meth:`advance` by completed units or :meth:`update` to a count.

    The no-op handle (``Bar()``: nothing shown) ignores both calls.
    """

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def shown(self) -> bool:
        """Whether this bar is drawn."""
        return self._progress is not None

    def advance(self, n: float = 1) -> None:
        """Add ``n`` completed units."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def update(self, completed: float) -> None:
        """Set the completed units to ``completed``."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed)


@contextmanager
def bar(description: str, total: float | None, *,
        console: Console | None = None) -> Iterator[Bar]:
    """Show a bar of ``total`` units (``None``: unknown) for the block; yields its :class:`Bar`.

    Args:
        description: what is counted (``"walk-forward folds"``).
        total: number of units the block will complete (``None``: an open-ended bar).
        console: where to draw (default: a rich console on standard error); it also decides
            whether to draw (:func:`enabled`).
    """
    global _shown
    if _shown is not None:  # nested: one more line of the display already shown
        outer = _shown
        task = outer.add_task(description, total=total)
        try:
            yield Bar(outer, task)
        finally:
            outer.remove_task(task)
        return
    if not enabled(console):
        yield Bar()
        return
    from rich.console import Console as RichConsole
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console or RichConsole(stderr=True), transient=False)
    task = progress.add_task(description, total=total)
    _shown = progress
    try:
        with progress:
            yield Bar(progress, task)
    finally:
        _shown = None


def track(iterable: Iterable[T], description: str, total: float | None = None, *,
          console: Console | None = None) -> Iterable[T]:
    """``iterable`` with a bar advancing by one per item (see :func:`bar`).

    Args:
        iterable: the items; ``total`` defaults to ``len(iterable)`` when it has one.
        description: what is counted.
        total: number of items (``None`` and no ``len``: an open-ended bar).
        console: where to draw (default: standard error).

    Returns:
        ``iterable`` itself when nothing is drawn (no wrapper, no overhead); otherwise a
        generator yielding the same items in order.
    """
    if _shown is None and not enabled(console):
        return iterable
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    return _tracked(iterable, description, total, console)


def _tracked(iterable: Iterable[T], description: str, total: float | None,
             console: Console | None) -> Iterator[T]:
    with bar(description, total, console=console) as b:
        for item in iterable:
            yield item
            b.advance()


def optuna_callback(b: Bar) -> Any:
    """An Optuna ``study.optimize`` callback advancing ``b`` by one per finished trial."""
    def callback(study: Any, trial: Any) -> None:
        b.advance()

    return callback
