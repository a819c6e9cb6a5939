"""Progress of a fit, per boosting round or epoch, for whoever listens (the tuner's pruner).

A fit reports its validation loss after every round (LightGBM, XGBoost) or epoch (the Keras
networks) through :func:`report_progress`; nothing happens unless a listener is installed with
:func:`listening` in the same thread (a ``contextvars`` variable, so folds fitted in other
processes report nothing). A listener may raise (``optuna.TrialPruned``) to stop the fit: the
exception propagates out of ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: ``listener(step, validation_loss)``: step = round or epoch index from 0; the loss is the
#: framework's validation metric (lower is better)
Listener = Callable[[int, float], None]

_listener: ContextVar[Listener | None] = ContextVar("huracan_fit_listener", default=None)


def active() -> bool:
    """Whether a listener is installed (fits add their reporting callback only then)."""
    return _listener.get() is not None


def report_progress(step: int, validation_loss: float) -> None:
    """Hand one round's or epoch's validation loss to the listener, if any."""
    fn = _listener.get()
    if fn is not None:
        fn(int(step), float(validation_loss))


@contextmanager
def listening(fn: Listener) -> Iterator[None]:
    """Install ``fn`` as the listener for the fits run inside the block."""
    token = _listener.set(fn)
    try:
        yield
    finally:
        _listener.reset(token)
