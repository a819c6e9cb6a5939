"""Process defaults every Hydra app (``huracan.train``, ``tune``, ``sizer``, ``nightly``) sets
before it imports anything heavy: one place, so the four apps run alike.

- ``TF_CPP_MIN_LOG_LEVEL=2``: TensorFlow's C++ info lines off (set before TensorFlow loads).
- ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``: no download bars in job logs.
- ``OMP_WAIT_POLICY=passive``: OpenMP threads (LightGBM, XGBoost) sleep between parallel regions
  instead of spinning. On a machine whose cores are busy with other work (symbols side by side in
  the nightly, a shared CI box) spinning threads wait for descheduled peers: measured on a 2-core
  machine at load average ~10 (3 LightGBM fits, 2 threads, 2,300 rows x 60 features, 200 rounds)
  121.6 s wall spinning, 9.3 s passive, 9.6 s on one thread, with the same results. On an idle box
  passive waits cost about 0.1 s per small fit; export ``OMP_WAIT_POLICY=active`` there. Read by
  the OpenMP runtime when it loads, so it must be set before LightGBM or XGBoost is imported.

A value already in the environment always wins (``os.environ.setdefault``). Importing this module
sets the defaults: each app imports it first, before its other imports.
"""

from __future__ import annotations

import os

#: the defaults :func:`set_app_defaults` puts into ``os.environ`` when absent
APP_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "OMP_WAIT_POLICY": "passive",
}


def set_app_defaults() -> None:
    """Put :data:`APP_ENVIRONMENT` into ``os.environ`` where the variable is not set yet."""
    for key, value in APP_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


set_app_defaults()
