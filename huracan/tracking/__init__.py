"""MLflow tracking: one run per Hydra job; models logged as pyfunc with scaler and estimator."""
