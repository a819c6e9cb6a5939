"""Commands fail loudly and briefly: the one-line error and the usage exit every entry point shares.

- Hydra apps (``python -m huracan.train|tune|sizer|nightly``): :func:`exit_with` prints
  ``huracan.<app>: error: <reason>`` (first line only, secrets masked) on stderr and exits with
  the given code, without Hydra's traceback. ``HYDRA_FULL_ERROR=1`` (Hydra's own switch) raises
  the original exception instead, traceback and all.
- One job of a Hydra multirun: :func:`fail_job` raises :class:`JobFailed`, a Hydra
  ``CompactHydraException``. Hydra records the job as failed and runs the sweep's other jobs;
  when the sweep ends it prints ``Error executing job with overrides: [...]`` (masked by
  :class:`huracan.callbacks.sweep.MaskSecrets`) and the reason line alone, and exits 1.
  (``SystemExit`` from a job would stop the sweep before its other jobs and callbacks.)
- Typer sub-apps run as modules (``python -m huracan.cli.registry``): :func:`run_app`; with no
  command they print their usage and exit 2 (click's ``NoArgsIsHelpError`` under click 8.2+,
  pinned through typer 0.29.2 / click 8.5.1, tested as commands).
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from hydra.errors import CompactHydraException

from huracan.secrets import mask_text


class JobFailed(CompactHydraException):
    """A job's input is unusable; ``str()`` is the one line Hydra prints at the end of the sweep.

    Picklable with its single argument, so it crosses the joblib and ray launchers' process
    boundaries like any exception.
    """


def error_line(prog: str, reason: BaseException | str) -> str:
    """``<prog>: error: <first line of reason>``, URL passwords and secret values masked."""
    text = str(reason).strip() or type(reason).__name__
    return f"{prog}: error: {mask_text(text.splitlines()[0])}"


def full_error() -> bool:
    """Whether ``HYDRA_FULL_ERROR=1`` asks for tracebacks (Hydra's own test of the variable)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def exit_with(prog: str, reason: BaseException | str, code: int = 1) -> NoReturn:
    """Print :func:`error_line` on stderr and exit with ``code`` (``SystemExit``, no traceback).

    Raises:
        SystemExit: always, with ``code``; the original exception instead when ``reason`` is
            one and ``HYDRA_FULL_ERROR=1``.
    """
    if isinstance(reason, BaseException) and full_error():
        raise reason
    print(error_line(prog, reason), file=sys.stderr, flush=True)
    raise SystemExit(code) from None


def fail_job(prog: str, reason: BaseException, *, multirun: bool, code: int = 1) -> NoReturn:
    """End a Hydra job whose input is unusable with one line: :func:`exit_with` in a single run;
    :class:`JobFailed` in a multirun, so the other jobs still run and the sweep ends non-zero.

    Raises:
        SystemExit: single run (``code``).
        JobFailed: multirun.
    """
    if not multirun:
        exit_with(prog, reason, code)
    if full_error():
        raise reason
    raise JobFailed(error_line(prog, reason)) from reason


def run_app(app: Any, help: str | None = None) -> None:
    """Run a Typer app as a module's ``__main__``: without a command it prints its usage and
    exits 2 (the sub-apps are built with ``no_args_is_help=True``).

    Args:
        app: a ``typer.Typer``, or ``{name: typer.Typer}`` for a module holding several
            sub-apps (mounted under one group described by ``help``, as ``huracan`` mounts them).
    """
    import typer

    if isinstance(app, dict):
        group = typer.Typer(help=help, no_args_is_help=True, add_completion=False)
        for name, sub in app.items():
            group.add_typer(sub, name=name)
        app = group
    app()
