"""The old module paths of moved code still resolve to the very same objects.

Hydra configs of past runs name ``_target_: huracan.tracking.callbacks.SweepRun`` and
``huracan.registry.callback.RegistryGate``; registered models were pickled under
``huracan.tracking.pyfunc`` and ``huracan.serving.cash``; scripts import ``huracan.db.ingest``.
An alias that re-exported a copy (or nothing) would break them silently.
"""

from __future__ import annotations

import importlib
import sys

import pytest

ALIASES = {
    "huracan.tracking.callbacks": "huracan.callbacks.sweep",
    "huracan.registry.callback": "huracan.callbacks.gate",
    "huracan.db.ingest": "huracan.data.ingest",
    "huracan.db.quality": "huracan.data.quality_db",
    "huracan.tracking.pyfunc": "huracan.serving.pyfunc",
    "huracan.serving.cash": "huracan.registry.cash_model",
}


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_an_old_path_exports_the_new_modules_objects(old: str, new: str) -> None:
    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    public = [n for n in vars(old_mod) if not n.startswith("_")
              and not isinstance(getattr(old_mod, n), type(sys))]
    assert public, f"{old} exports nothing"
    shared = [n for n in public if hasattr(new_mod, n)]
    assert shared, f"{old} shares no name with {new}"
    for name in shared:
        assert getattr(old_mod, name) is getattr(new_mod, name), f"{old}.{name} is a copy"


def test_the_hydra_targets_of_past_runs_resolve() -> None:
    from hydra.utils import get_class

    from huracan.callbacks.gate import RegistryGate
    from huracan.callbacks.sweep import MaskSecrets, SweepRun

    assert get_class("huracan.tracking.callbacks.SweepRun") is SweepRun
    assert get_class("huracan.tracking.callbacks.MaskSecrets") is MaskSecrets
    assert get_class("huracan.registry.callback.RegistryGate") is RegistryGate


def test_python_m_huracan_cli_runs_the_console_script(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["huracan", "--help"])
    sys.modules.pop("huracan.cli.__main__", None)
    with pytest.raises(SystemExit) as exc:  # what `python -m huracan.cli` executes
        importlib.import_module("huracan.cli.__main__")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for group in ("registry", "drift", "nightly", "lake"):
        assert group in out
