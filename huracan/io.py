"""Files written atomically and durably: :func:`atomic_write` (and its ``bytes``/``str``
shorthands) is the one writer of every file a reader or a rerun must never see half-written
(the candle lake's parts, sweep results, masked Hydra configs).

The recipe is the usual one for atomic replacement on POSIX (SQLite's and LevelDB's
rename-then-fsync-the-directory; POSIX ``rename(2)``, ``fsync(2)``): write a temporary file in
the target's directory, flush and ``fsync`` it, ``os.replace`` it onto the target (atomic within
one file system), then ``fsync`` the directory so the rename itself survives a power cut. A
reader sees the old file or the new one, never a mix; a writer that raises (or is interrupted)
before the rename removes its temporary and leaves the target untouched. A process killed
outright can leave its hidden temporary behind: callers that care choose its name
(``temp_name``) so they can recognise and delete it.

Bottom layer of the package (``benchmarks/import_layers.py``): imports nothing from ``huracan``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *,
                 temp_name: str | None = None,
                 before_replace: Callable[[], object] | None = None) -> Path:
    """Write ``path`` atomically: ``write(fh)`` into a temporary file beside it (binary mode),
    flush + fsync, ``before_replace()`` (a hook, e.g. a crash-test checkpoint), ``os.replace``
    onto ``path``, fsync of the directory. The directory must exist.

    Args:
        write: fills the open temporary file.
        temp_name: the temporary's file name in ``path``'s directory; default
            ``.<name>.<random hex>.tmp`` (hidden, unique per call).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        whatever ``write``/``before_replace`` raise, and ``OSError``: the temporary is removed
        and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(temp_name or f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write` of ``text`` encoded as ``encoding``."""
    return atomic_write_bytes(path, text.encode(encoding))


def fsync_dir(directory: str | Path) -> None:
    """``fsync`` a directory, so a rename or unlink inside it is durable (POSIX)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
