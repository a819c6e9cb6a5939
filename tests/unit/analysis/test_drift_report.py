"""`drift_report` on real candles: the shipped 2024 BTC sample (January-June vs July-September),
a window against itself, the 2018 crash months against 2024, a shifted copy of one feature; the
scaling drift, the Evidently test choice, input errors and the saved files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from huracan.analysis.drift import (
    DriftInputError,
    drift_report,
    scaling_drift,
    score_kind,
    select_window,
    window_span,
)
from huracan.features.build import FeatureConfig, FeatureSet, build_features
from huracan.splits import fit_scaler


@pytest.fixture(scope="module")
def fs_2024(sample_1h) -> FeatureSet:
    return build_features(sample_1h, "1h", FeatureConfig())


@pytest.fixture(scope="module")
def halves(fs_2024):
    fr = fs_2024.frame
    return fr[fr.index < "2024-07-01"], fr[fr.index >= "2024-07-01"]


@pytest.fixture(scope="module")
def sample_report(fs_2024, halves):
    ref, cur = halves
    scaler = fit_scaler(ref[fs_2024.feature_names].to_numpy(np.float32))
    return drift_report(ref, cur, fs_2024.feature_names, target_col="label", scaler=scaler)


def test_january_june_vs_july_september_on_the_shipped_sample(sample_report, fs_2024, halves):
    rep = sample_report
    ref, cur = halves
    assert rep.reference_rows == len(ref) and rep.current_rows == len(cur)
    assert rep.reference_start.startswith("2024-01") and rep.current_start.startswith("2024-07")
    assert rep.n_features == len(fs_2024.feature_names)
    # our share over the input features equals Evidently's DriftedColumnsCount over them
    assert rep.drift_share == pytest.approx(rep.evidently_share)
    assert rep.drift_share == pytest.approx(rep.n_drifted / rep.n_features)
    assert rep.dataset_drift == (rep.drift_share >= 0.5)
    # > 1,000 reference rows: Evidently picks the normed Wasserstein distance (drift >= 0.1)
    assert {c.method for c in rep.features} == {"Wasserstein distance (normed)"}
    assert {c.threshold for c in rep.features} == {0.1}
    assert all(c.score_kind == "distance" for c in rep.features)
    assert all(c.drifted == (c.score >= 0.1) for c in rep.features)
    flagged = set(rep.drifted_features)
    # summer 2024 was a different volatility regime; hours and weekdays did not move
    assert {"rv_24", "rv_72", "atr_14"} <= flagged
    assert not flagged & {"hour_sin", "hour_cos", "dow_sin", "dow_cos"}
    assert rep.target is not None and rep.target.role == "target"
    assert rep.prediction is None  # no prediction column given
    assert len(rep.scaling) == rep.n_features
    assert set(rep.timings) >= {"evidently_run", "parse", "scaling", "summary", "total"}
    summary = {s["column"]: s for s in rep.summary}
    assert summary["rv_24"]["current_missing"] == 0
    assert summary["rv_24"]["current_max"] == pytest.approx(cur["rv_24"].max())
    assert summary["rv_24"]["reference_min"] == pytest.approx(ref["rv_24"].min())
    print(f"\nJan-Jun vs Jul-Sep 2024: share {rep.drift_share:.3f} "
          f"({rep.n_drifted}/{rep.n_features}): {rep.drifted_features}")


@pytest.mark.slow  # another full Evidently report (seconds)
def test_a_window_against_itself_finds_no_drift(fs_2024, halves):
    ref, _ = halves
    rep = drift_report(ref, ref.copy(), fs_2024.feature_names, target_col="label")
    assert rep.drift_share == 0.0 and rep.drifted_features == [] and not rep.dataset_drift
    assert all(c.score == pytest.approx(0.0, abs=1e-12) for c in rep.features)
    assert rep.target is not None and not rep.target.drifted


@pytest.mark.slow  # another full Evidently report (seconds)
def test_the_2018_crash_months_are_flagged_against_2024(candles_1h, fs_2024, halves):
    ts = pd.to_datetime(candles_1h["timestamp"], utc=True)
    crash = candles_1h[(ts >= "2018-01-01") & (ts < "2018-04-01")]
    cur = build_features(crash, "1h", FeatureConfig()).frame
    ref, _ = halves
    scaler = fit_scaler(ref[fs_2024.feature_names].to_numpy(np.float32))
    rep = drift_report(ref, cur, fs_2024.feature_names, target_col="label", scaler=scaler)
    assert rep.dataset_drift and rep.drift_share > 0.6
    assert {"rv_24", "atr_14", "ret_1"} <= set(rep.drifted_features)
    assert rep.target is not None and rep.target.drifted  # 2018 hourly returns were far wider
    scale = {s.feature: s for s in rep.scaling}
    assert scale["rv_24"].flagged and scale["rv_24"].mean_shift > 2  # > 2 training std higher
    assert scale["ret_1"].std_ratio > 2


@pytest.mark.slow  # another full Evidently report (seconds)
def test_a_shifted_copy_of_one_feature_is_flagged_alone(fs_2024, halves):
    ref, _ = halves
    cur = ref.copy()
    cur["rv_24"] = cur["rv_24"] + ref["rv_24"].std()  # the same rows, rv_24 one std higher
    scaler = fit_scaler(ref[fs_2024.feature_names].to_numpy(np.float32))
    rep = drift_report(ref, cur, fs_2024.feature_names, scaler=scaler, drift_share=0.04)
    assert rep.drifted_features == ["rv_24"]
    assert rep.dataset_drift  # 1/21 >= 0.04
    assert rep.scaling_flagged == ["rv_24"]
    s = next(s for s in rep.scaling if s.feature == "rv_24")
    assert s.mean_shift == pytest.approx(1.0, rel=1e-3) and s.std_ratio == pytest.approx(1.0, 1e-3)


def test_small_references_get_the_ks_test_and_p_values(fs_2024, halves):
    ref, cur = halves
    rep = drift_report(ref.iloc[:500], cur.iloc[:500], ["rv_24", "hour_sin"])
    rv = rep.features[0]
    assert rv.method == "K-S p_value" and rv.score_kind == "p_value" and rv.threshold == 0.05
    assert rv.drifted == (rv.score < 0.05)
    assert score_kind("chi-square p_value") == "p_value"
    assert score_kind("Jensen-Shannon distance") == "distance"


def test_prediction_drift_and_unmatured_labels(fs_2024, halves):
    ref, cur = halves
    ref = ref.assign(prediction=ref["ret_1"] * 0.1)
    cur = cur.iloc[:200].assign(prediction=cur["ret_1"].iloc[:200] * 0.1 + 0.01)
    cur.loc[cur.index[10:], "label"] = np.nan  # only 10 labels matured
    rep = drift_report(ref, cur, ["ret_1"], prediction_col="prediction", target_col="label")
    assert rep.prediction is not None and rep.prediction.role == "prediction"
    assert rep.prediction.drifted  # forecasts moved by 0.01 (many forecast std)
    assert rep.target is None and "10 matured label(s)" in rep.target_note
    assert rep.n_features == 1  # forecast and label never count in the share


def test_saved_html_and_json(tmp_path, sample_report):
    html, js = sample_report.save(tmp_path / "out")
    assert html.stat().st_size > 100_000 and "<html" in html.read_text()[:2000].lower()
    saved = json.loads(js.read_text())
    assert set(saved) == {"metrics", "tests"}
    assert len(saved["metrics"]) == len(sample_report.snapshot.dict()["metrics"])
    summary = json.loads((tmp_path / "out" / "drift_summary.json").read_text())
    assert summary["drift_share"] == pytest.approx(sample_report.drift_share)
    assert summary["drifted_features"] == sample_report.drifted_features
    assert {"save_html", "save_json"} <= set(sample_report.timings)


def test_scaling_drift_in_units_of_the_scaler():
    cur = pd.DataFrame({"a": [1.0, 3.0], "b": [10.0, 10.0]})

    class Scaler:
        mean_ = np.array([0.0, 10.0])
        scale_ = np.array([2.0, 0.5])

    a, b = scaling_drift(cur, ["a", "b"], Scaler())
    assert a.mean_shift == pytest.approx(1.0) and a.std_ratio == pytest.approx(0.5)
    assert a.flagged  # mean one std away
    assert b.mean_shift == 0.0 and b.std_ratio == 0.0 and b.flagged  # spread collapsed
    with pytest.raises(DriftInputError, match="column"):
        scaling_drift(cur, ["a"], Scaler())


def test_input_errors(fs_2024, halves):
    ref, cur = halves
    with pytest.raises(DriftInputError, match="lacks"):
        drift_report(ref, cur.drop(columns=["rv_24"]), ["rv_24"])
    with pytest.raises(DriftInputError, match="drift_share"):
        drift_report(ref, cur, ["rv_24"], drift_share=0.0)
    with pytest.raises(DriftInputError, match="row"):
        drift_report(ref, cur.iloc[:1], ["rv_24"])
    with pytest.raises(DriftInputError, match="no features"):
        drift_report(ref, cur, [])
    with pytest.raises(DriftInputError, match="non-numeric"):
        drift_report(ref.assign(s="x"), cur.assign(s="x"), ["s"])


def test_windows(fs_2024):
    fr = fs_2024.frame
    last = fr.index.max()
    w = select_window(fr, "30d", "1h")
    assert w.index.max() == last and w.index.min() > last - pd.Timedelta("30d")
    assert len(select_window(fr, "24", "1h")) == 24
    w = select_window(fr, ("2024-07-01", "2024-07-31 23:00"), "1h")
    assert str(w.index.min()) == "2024-07-01 00:00:00+00:00" and w.index.max().month == 7
    assert window_span("720", "1h") == pd.Timedelta("30d")
    for bad in ("abc", "-3d"):
        with pytest.raises(DriftInputError):
            window_span(bad, "1h")
    with pytest.raises(DriftInputError, match="after its end"):
        select_window(fr, ("2024-08-01", "2024-07-01"), "1h")
    with pytest.raises(DriftInputError, match="holds 0"):
        select_window(fr, ("2030-01-01", None), "1h")
