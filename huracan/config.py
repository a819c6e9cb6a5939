"""Config helpers shared by the entry points: OmegaConf resolvers, and the strict-key checks
every typed setting is built through (:func:`build`, :class:`UnknownKeyError`; see
:mod:`huracan.settings`, which re-exports them)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from huracan.datasets import dataset_path

#: where ``${huracan_shared:...}`` looks: ``HURACAN_SHARED_DATA``, else ``../shared/data`` beside
#: the checkout (the recorded exchange data the tests and the parity benchmark read)
SHARED_DATA_ENV = "HURACAN_SHARED_DATA"


def shared_data_root() -> str:
    """The shared data directory: ``HURACAN_SHARED_DATA``, else ``../shared/data`` beside the
    checkout."""
    return str(Path(os.environ.get(SHARED_DATA_ENV)
                    or Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_data_path(relative: str) -> str:
    """Absolute path of a file under the shared data directory.

    Raises:
        FileNotFoundError: naming the file and where it was looked for.
    """
    root = Path(shared_data_root())
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(f"shared data file {relative!r} not found under {root} "
                                f"(set {SHARED_DATA_ENV} to the shared data directory)")
    return str(path)


def register_resolvers() -> None:
    """Register ``${huracan_dataset:NAME}`` (a shipped data file) and ``${huracan_shared:PATH}``
    (a file of the shared data directory); idempotent."""
    if not OmegaConf.has_resolver("huracan_dataset"):
        OmegaConf.register_new_resolver("huracan_dataset", dataset_path)
    if not OmegaConf.has_resolver("huracan_shared"):
        OmegaConf.register_new_resolver("huracan_shared", shared_data_path)


# ---------------------------------------------------------------------------- strict keys
class UnknownKeyError(ValueError):
    """A config key no typed setting knows (a typo, or a key of another version).

    Attributes:
        keys: the dotted unknown keys (``split.trian_bars``); ``names`` the same undotted.
        group: the group they sit in (``split``; ``""`` for the top level).
        known: the keys the group accepts, sorted.
        kind: the class the group builds when it depends on the config (``WalkForwardSplitter``).
    """

    def __init__(self, group: str, unknown: Iterable[str], known: Iterable[str],
                 kind: str | None = None, hint: str | None = None) -> None:
        self.group, self.kind, self.hint = group, kind, hint
        self.known = sorted(str(k) for k in known)
        self.names = sorted(str(k) for k in unknown)
        self.keys = [f"{group}.{k}" if group else k for k in self.names]
        where = f"group '{group}'" if group else "the top level of the config"
        if kind:
            where += f" ({kind})"
        close = [f"{group}.{m}" if group else m for k in self.names
                 for m in difflib.get_close_matches(k, self.known, n=1)]
        suggest = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown config key{'s' if len(self.names) > 1 else ''} "
            f"{', '.join(repr(k) for k in self.keys)} in {where}: known keys are "
            f"{', '.join(self.known) or '(none)'}{suggest}{f' ({hint})' if hint else ''}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across launcher processes
        return (type(self), (self.group, self.names, self.known, self.kind, self.hint))


#: Keys a shipped config group carries for Hydra's sake only (interpolated into other keys),
#: accepted beside the dataclass's fields and never read by the code: group -> key -> why.
CONFIG_ONLY_KEYS: dict[str, dict[str, str]] = {
    "data": {"base": "the market's base asset, interpolated into data.path and data.symbol "
                     "(conf/data/binance_1h.yaml, conf/data/freqtrade_testdata.yaml)"},
}


def known_fields(cls: type) -> list[str]:
    """The constructor fields of dataclass ``cls`` a config may set (learned state, named with a
    trailing ``_``, and ``init=False`` fields excluded)."""
    return [f.name for f in fields(cls) if f.init and not f.name.endswith("_")]


def check_keys(node: Mapping[str, Any] | None, group: str, known: Iterable[str], *,
               kind: str | None = None, hint: str | None = None,
               unlisted: Iterable[str] = ()) -> None:
    """Refuse the keys of ``node`` outside ``known`` (and ``unlisted``: accepted, not listed in
    the message, e.g. Hydra's call options).

    Raises:
        UnknownKeyError: naming every unknown key (dotted), the group and the known keys.
    """
    allowed = set(known)
    unknown = [str(k) for k in (node or {}) if str(k) not in allowed | set(unlisted)]
    if unknown:
        raise UnknownKeyError(group, unknown, allowed, kind=kind, hint=hint)


def build(cls: type, node: Mapping[str, Any] | None, group: str, *,
          extra: Iterable[str] = (), kind: str | None = None) -> Any:
    """``cls(**node)`` for a dataclass ``cls`` and the config node of ``group``.

    ``extra`` names keys the caller reads itself (e.g. ``features.top_n``); the group's
    :data:`CONFIG_ONLY_KEYS` are accepted and left out of the call.

    Raises:
        UnknownKeyError: a key neither ``cls`` nor the caller knows.
        ValueError: a value the dataclass refuses.
    """
    node = dict(node or {})
    names = known_fields(cls)
    check_keys(node, group, [*names, *extra, *CONFIG_ONLY_KEYS.get(group, {})], kind=kind)
    return cls(**{k: v for k, v in node.items() if k in names})
