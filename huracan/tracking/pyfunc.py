"""Alias: the old home of the logged forecaster's pyfunc class. Every model logged before it
moved pickled it as ``huracan.tracking.pyfunc.ForecasterPyfunc``, so this path must keep
resolving. It lives in :mod:`huracan.serving.pyfunc`; new code imports from there."""

from huracan.serving.pyfunc import ForecasterPyfunc, save_bundle

__all__ = ["ForecasterPyfunc", "save_bundle"]
