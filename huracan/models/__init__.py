"""The model zoo: every model follows :class:`huracan.models.base.Forecaster`."""
