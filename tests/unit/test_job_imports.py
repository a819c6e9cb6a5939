"""A LightGBM training job pays only for what it uses: its modules import no deep-learning
framework (TensorFlow/Keras for the sequence models, PyTorch for the sizer) and no SHAP or
Evidently until a step needs them."""

from __future__ import annotations

import subprocess
import sys

#: heavy packages a LightGBM job's modules must not import at module level
HEAVY = ("tensorflow", "keras", "torch", "shap", "evidently", "optuna", "xgboost")

#: what ``python -m huracan.train model=lightgbm`` imports before its first stage, plus the
#: model and the stages it runs (SHAP, importance, logging, serving bundle, registration)
JOB_MODULES = ("huracan.train", "huracan.pipeline", "huracan.stages", "huracan.tracking.run",
               "huracan.tracking.callbacks", "huracan.registry.callback",
               "huracan.registry.promotion", "huracan.models.lightgbm",
               "huracan.evaluation.explain", "huracan.analysis.analyzer",
               "huracan.serving.bundle")


def test_a_lightgbm_job_imports_no_deep_learning_framework():
    code = ("import importlib, sys\n"
            f"for m in {JOB_MODULES!r}:\n"
            "    importlib.import_module(m)\n"
            f"print(','.join(h for h in {HEAVY!r} if h in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = proc.stdout.strip()
    assert loaded == "", f"imported at module level by a LightGBM job: {loaded}"
