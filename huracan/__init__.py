"""Huracan: the MLOps brain for ML crypto trading."""

__version__ = "0.1.0"
