"""The market-structure families inside the feature matrix: causal over the FULL feature set
(price + families, through ``build_features``), NaN with availability flags where a source does
not cover, neutral fill for the networks, and training-row variants by cascade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.config import shared_data_root
from huracan.features.build import FeatureConfig, build_features
from huracan.features.families import load_sources_from_files

FULL = FeatureConfig(families=["derivatives", "liquidations", "sentiment"])


@pytest.fixture(scope="module")
def btc_2021(candles_1h):
    c = candles_1h[(candles_1h.timestamp >= pd.Timestamp("2020-12-01", tz="UTC"))
                   & (candles_1h.timestamp < pd.Timestamp("2021-03-01", tz="UTC"))]
    sources = load_sources_from_files(shared_data_root(), "BTC/USDT", c.timestamp.min(),
                                      c.timestamp.max() + pd.Timedelta("1h"))
    return c.reset_index(drop=True), sources


def test_the_full_feature_set_is_causal_prefix_by_prefix(btc_2021):
    candles, sources = btc_2021
    full = build_features(candles, "1h", FULL, sources=sources)
    assert {"funding_rate", "basis", "oi_logchg_1d", "fear_greed", "funding_available",
            "sentiment_available"} <= set(full.feature_names)
    rng = np.random.default_rng(0)
    for cut in sorted(rng.choice(np.arange(1500, len(candles) - 50), size=4, replace=False)):
        head = candles.iloc[:cut]
        # sources truncated at the cut's close too: nothing known after it may be used
        close = head.timestamp.max() + pd.Timedelta("1h")
        src = {k: (v[pd.to_datetime(v["timestamp"], utc=True) < close]
                   if isinstance(v, pd.DataFrame) and "timestamp" in v else v)
               for k, v in sources.items()}
        part = build_features(head, "1h", FULL, sources=src)
        common = part.frame.index.intersection(full.frame.index)
        # the label and next return of the last rows need later bars; the features do not
        pd.testing.assert_frame_equal(part.frame.loc[common, part.feature_names],
                                      full.frame.loc[common, full.feature_names],
                                      check_exact=False, rtol=1e-9, atol=1e-12)


def test_uncovered_families_are_nan_with_a_zero_flag_never_zero(btc_2021):
    candles, sources = btc_2021
    short = dict(sources)
    f = sources["funding"]
    short["funding"] = f[pd.to_datetime(f.timestamp, utc=True)
                         < pd.Timestamp("2021-01-15", tz="UTC")]  # stops mid-window
    fs = build_features(candles, "1h", FeatureConfig(families=["funding", "liquidations"]),
                        sources=short)
    late = fs.frame.index >= pd.Timestamp("2021-01-20", tz="UTC")
    assert fs.frame.loc[late, "funding_rate"].isna().all()
    assert (fs.frame.loc[late, "funding_available"] == 0).all()
    early = fs.frame.index < pd.Timestamp("2021-01-14", tz="UTC")
    assert (fs.frame.loc[early, "funding_available"] == 1).mean() > 0.95
    # no liquidation history at all: the family is NaN everywhere, its flag 0, coverage 0
    assert fs.frame["liquidation_momentum_1h"].isna().all()
    assert fs.coverage["liquidations"] == 0.0 and 0.3 < fs.coverage["funding"] < 0.8


def test_networks_get_a_neutral_fill_and_trees_keep_nan(btc_2021):
    from huracan.models.keras.cnn import CNNForecaster
    from huracan.models.lightgbm import LightGBMForecaster

    candles, sources = btc_2021
    fs = build_features(candles, "1h", FeatureConfig(families=["liquidations", "funding"]),
                        sources=sources)
    X, y = fs.X, fs.y
    assert np.isnan(X).any()
    tree = LightGBMForecaster(n_estimators=10, log_period=0).fit(X[:1000], y[:1000])
    assert np.isfinite(tree.predict(X[1000:1100])).all()
    net = CNNForecaster(filters=4, num_layers=1, lookback=8, epochs=1, verbose=0,
                        head_units=4).fit(X[:1000], y[:1000])
    filled = np.nan_to_num(X[1000:1100], nan=0.0)
    np.testing.assert_allclose(net.predict(X[1000:1100]), net.predict(filled))


def test_cascade_variants_need_cascades_and_say_so(btc_2021):
    from huracan.settings import TrainSettings
    from huracan.stages import LabelTimes

    candles, sources = btc_2021
    fs = build_features(candles, "1h", FeatureConfig(families=["liquidations"]),
                        sources=sources)
    weights = TrainSettings(rows="cascade").row_weights(fs.frame)
    assert weights.sum() == 0  # no liquidation history in 2021: no cascade bar
    with pytest.raises(ValueError, match="weight 0"):
        LabelTimes.of(fs, row_weights=weights).weights(range(0, 500))
    normal = TrainSettings(rows="normal").row_weights(fs.frame)
    assert (normal == 1).all()
    with pytest.raises(ValueError, match="liquidations feature family"):
        TrainSettings(sample_weight="liquidation_density").row_weights(
            build_features(candles, "1h", FeatureConfig()).frame)
