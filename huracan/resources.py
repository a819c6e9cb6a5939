"""Where Huracan's shipped, non-Python resources are: the one place that locates them.

The product's layout keeps ``conf/`` (Hydra configs), ``experiments/`` (presets; ``conf/experiment``
links to it) and ``expectations/`` (Great Expectations suites) at the top level of the repository.
An installed wheel has no repository around it, so the package carries copies: ``huracan/_conf``
and ``huracan/_expectations`` are symlinks to the top-level folders in the source tree, and
setuptools follows them when it builds a wheel (``[tool.setuptools.package-data]`` in
pyproject.toml), storing real files in the wheel. Experiments ship as ``_conf/experiment``.

- source checkout (editable install, or ``python -m`` from the repository): the top-level folders;
- installed wheel (``pip install .`` or a built wheel): the copies inside the package.

Writable outputs never go into an installed package: :func:`tuned_presets_dir` is the checkout's
``experiments/tuned``, else ``experiments/tuned`` under the current directory.
"""

from __future__ import annotations

from pathlib import Path

#: the ``huracan`` package directory
PACKAGE_DIR = Path(__file__).resolve().parent
#: the directory holding the package: the repository in a source checkout, site-packages otherwise
_PARENT = PACKAGE_DIR.parent


def source_root() -> Path | None:
    """The repository root when Huracan runs from a source checkout (``pyproject.toml`` and
    ``conf/train.yaml`` beside the package), else ``None`` (an installed wheel)."""
    if (_PARENT / "pyproject.toml").is_file() and (_PARENT / "conf" / "train.yaml").is_file():
        return _PARENT
    return None


def conf_dir() -> Path:
    """The Hydra config directory (``train.yaml``, ``tune.yaml``, ``sizer.yaml`` and the config
    groups): the checkout's ``conf/``, else the installed ``huracan/_conf``."""
    root = source_root()
    return root / "conf" if root is not None else PACKAGE_DIR / "_conf"


def experiments_dir() -> Path:
    """The experiment presets (the ``experiment`` config group): the checkout's
    ``experiments/``, else the installed ``huracan/_conf/experiment``. Read-only when installed."""
    root = source_root()
    return root / "experiments" if root is not None else PACKAGE_DIR / "_conf" / "experiment"


def expectations_dir() -> Path:
    """The Great Expectations suites (``ohlcv.json``...): the checkout's ``expectations/``, else
    the installed ``huracan/_expectations``."""
    root = source_root()
    return root / "expectations" if root is not None else PACKAGE_DIR / "_expectations"


def hparams_search_dir() -> Path:
    """The Optuna search spaces, ``<conf>/hparams_search``."""
    return conf_dir() / "hparams_search"


def tuned_presets_dir() -> Path:
    """Where ``huracan.tune`` writes the best trial's preset (``tune.preset_dir`` overrides it):
    the checkout's ``experiments/tuned`` (so ``experiment=tuned/<name>`` composes at once), else
    ``experiments/tuned`` under the current working directory, never inside site-packages.

    An installed Huracan composes a preset written there once its directory is on Hydra's search
    path under the group's name, e.g. ``mkdir -p conf && ln -s ../experiments conf/experiment``
    then ``python -m huracan.train hydra.searchpath=[file://$PWD/conf] experiment=tuned/<name>``.
    """
    root = source_root()
    return (root if root is not None else Path.cwd()) / "experiments" / "tuned"


__all__ = ["PACKAGE_DIR", "conf_dir", "expectations_dir", "experiments_dir", "hparams_search_dir",
           "source_root", "tuned_presets_dir"]
