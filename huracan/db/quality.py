"""Alias: the old home of the brain-store quality sink, kept so old imports still resolve. It
lives in :mod:`huracan.data.quality_db`; new code imports from there."""

from huracan.data.quality_db import DbQualitySink, insert_quality_issues, json_safe

__all__ = ["DbQualitySink", "insert_quality_issues", "json_safe"]
