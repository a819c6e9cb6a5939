"""Fixtures for the brain-store tests: the real data files. The database fixtures (``db_url``,
``engine``, ``pg_engine``: SQLite and a fresh Postgres database per test) live in the root
``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FUNDING_FILES = sorted(SHARED_DATA.glob("derivatives/**/binance-usdm_*_funding_*.parquet"))
LIQUIDATION_EVENTS = (SHARED_DATA / "liquidations"
                      / "binance-usdm_ALL_liquidation-events_20251022-20251022.parquet")
OPEN_INTEREST = (SHARED_DATA / "derivatives"
                 / "unknown-agg_BTC_open-interest-1d_20190330-20241120.parquet")
XRP_FUNDING = (SHARED_DATA / "derivatives" / "freqtrade_testdata"
               / "binance-usdm_XRPUSDT_funding_20211118-20211218.parquet")


class SharedData:
    """Paths of the real files in ../shared/data used by the store tests."""

    funding_files = FUNDING_FILES
    liquidation_events = LIQUIDATION_EVENTS
    open_interest = OPEN_INTEREST
    xrp_funding = XRP_FUNDING


@pytest.fixture(scope="session")
def shared() -> type[SharedData]:
    """The real data files; the test is skipped when ../shared/data is not beside the checkout."""
    missing = [p for p in (LIQUIDATION_EVENTS, OPEN_INTEREST, XRP_FUNDING) if not p.exists()]
    if missing or len(FUNDING_FILES) < 4:
        pytest.skip(f"{SHARED_DATA} not found (../shared/data is expected beside the checkout)")
    return SharedData
