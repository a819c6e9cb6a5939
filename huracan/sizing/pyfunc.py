"""MLflow pyfunc of a trained sizer (what ``huracan-sizer-<SYMBOL>-<tf>`` versions hold)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class SizerPyfunc(PythonModel):
    """The SB3 zip (artifact ``policy``); ``predict`` maps observations (columns
    ``observation_names`` of the sizer, one row each) to ``size`` in [0, 1] and ``leverage`` in
    [1, max_leverage], the policy's deterministic action."""

    def load_context(self, context: Any) -> None:
        from huracan.sizing.ppo import load_sizer

        self.sizer = load_sizer(context.artifacts["policy"])

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: Any = None) -> pd.DataFrame:
        names = list(self.sizer.observation_names)
        missing = [c for c in names if c not in model_input.columns]
        if missing:
            raise ValueError(f"input is missing observation column(s) {missing}")
        obs = model_input[names].to_numpy(np.float32)
        max_lev = self.sizer.env_config.max_leverage
        rows = []
        for row in obs:
            a = np.clip(self.sizer.act(row), -1.0, 1.0)
            rows.append((float((a[0] + 1.0) / 2.0),
                         float(1.0 + (a[1] + 1.0) / 2.0 * (max_lev - 1.0))))
        return pd.DataFrame(rows, columns=["size", "leverage"])
