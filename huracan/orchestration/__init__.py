"""Orchestration of the nightly pipeline: the pipeline_runs ledger, the per-symbol steps
and the executors."""
