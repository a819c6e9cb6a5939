"""Data sources, loading and validation."""
