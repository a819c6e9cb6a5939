"""Causal feature engineering: the value at bar t uses data up to and including bar t only."""
