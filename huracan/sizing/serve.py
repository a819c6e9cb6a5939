"""The suggested size and leverage for the latest bar (``huracan size BTC/USDT --timeframe 1h``).

1. The production forecaster of ``huracan-<SYMBOL>-<tf>`` forecasts the last ``bars`` bars of
   its data (features rebuilt through the same stages, the latest bar included although its label
   is not known yet).
2. The policy: the production sizer of ``huracan-sizer-<SYMBOL>-<tf>`` serves the policy its run
   chose on validation (tag ``serve_policy``: PPO or a baseline); without a production sizer, the
   best baseline on the validation part of the latest sizer run; without any sizer run, ``fixed``
   (size 1, leverage 1). ``policy=`` overrides.
3. The policy is played over those bars from a flat start (the environment's rules: fees,
   funding, liquidation; the agent's own recent PnL and drawdown are part of the PPO
   observation), and the action of the last bar is the suggestion.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from huracan.sizing.env import EnvConfig, SizingData

BASELINE_POLICIES = ("fixed", "sign_rule", "volatility_target", "kelly")


@dataclass
class SizeSuggestion:
    """Attributes: ``size`` in [0, 1] of capital, ``leverage`` in [1, max], ``position`` =
    sign(forecast) x size x leverage (units of equity; negative = short), the forecast (forward
    return, fraction) and the bar it was made at, which policy and versions decided, and why."""

    symbol: str
    timeframe: str
    last_bar: str
    forecast: float
    size: float
    leverage: float
    position: float
    policy: str
    forecaster_version: str
    sizer_version: str | None
    sizer_run_id: str | None
    reason: str
    bars_played: int
    liquidated_in_window: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        side = "long" if self.position > 0 else "short" if self.position < 0 else "flat"
        return (f"{self.symbol} {self.timeframe} at bar {self.last_bar}: forecast "
                f"{self.forecast:+.5f} -> {side}, size {self.size:.3f} x leverage "
                f"{self.leverage:.2f} = position {self.position:+.3f} of equity\n"
                f"policy {self.policy} (sizer v{self.sizer_version or '-'}, forecaster "
                f"v{self.forecaster_version}): {self.reason}")


def _sizer_choice(client: Any, name: str, policy: str | None) -> dict[str, Any]:
    from huracan.registry.promotion import PRODUCTION, alias_version

    try:
        prod = alias_version(client, name, PRODUCTION)
    except Exception:
        prod = None
    if prod is not None and prod.run_id:
        run = client.get_run(prod.run_id)
        chosen = policy or run.data.tags.get("serve_policy", "ppo")
        return {"run": run, "version": str(prod.version), "policy": chosen,
                "reason": "forced by --policy" if policy else
                f"production sizer v{prod.version}: best on its validation part"}
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception:
        versions = []
    if versions:
        latest = max(versions, key=lambda v: int(v.version))
        run = client.get_run(latest.run_id)
        m = run.data.metrics
        scores = {p: m.get(f"val_{p}_composite_score", -math.inf) for p in BASELINE_POLICIES}
        best = max(scores, key=lambda p: scores[p])
        chosen = policy or best
        if chosen == "ppo":
            return {"run": run, "version": str(latest.version), "policy": "ppo",
                    "reason": f"forced by --policy: PPO of sizer v{latest.version} (NOT in "
                              "production)"}
        return {"run": run, "version": None, "policy": chosen,
                "reason": "forced by --policy" if policy else
                f"no production sizer (v{latest.version} was not promoted): the best baseline "
                f"on its validation part ({best}, composite {scores[best]:.3f})"}
    if policy == "ppo":
        raise LookupError(f"no sizer {name} to serve PPO from: run python -m huracan.sizer")
    return {"run": None, "version": None, "policy": policy or "fixed",
            "reason": "forced by --policy" if policy else "no sizer trained yet: fixed size 1 x 1"}


def suggest(symbol: str, timeframe: str, *, client: Any, data: str | Path | None = None,
            policy: str | None = None, bars: int = 720) -> SizeSuggestion:
    """The suggestion for the latest bar (see the module docstring).

    Args:
        symbol, timeframe: ``BTC/USDT``, ``1h``.
        client: MLflow client of the registry.
        data: OHLCV file with the newest candles (default: the forecaster's training file).
        policy: ``ppo`` or a baseline name, instead of the registry's choice.
        bars: bars the policy is played over before the last one (its rolling observations and
            recent PnL warm up inside them).

    Raises:
        LookupError: no production forecaster, or ``policy=ppo`` without a sizer.
        ValueError: an unknown policy; too few bars.
    """
    from huracan import stages
    from huracan.data.ohlcv import bars_per_year
    from huracan.pipeline import load_run_model, rebuild_features, run_settings
    from huracan.regime.live import load_detector
    from huracan.registry.promotion import PRODUCTION, alias_version, registered_model_name
    from huracan.sizing import baselines as bl
    from huracan.sizing.env import SizingEnv, run_episode
    from huracan.sizing.job import (
        POLICY_ARTIFACT,
        SizerSettings,
        intrabar_returns,
        load_funding,
        regime_onehot,
        registered_sizer_name,
    )
    from huracan.sizing.ppo import UnitActions, load_sizer

    if policy is not None and policy not in ("ppo", *BASELINE_POLICIES):
        raise ValueError(f"unknown policy {policy!r}; expected ppo or one of {BASELINE_POLICIES}")
    fname = registered_model_name(symbol, timeframe)
    try:
        fv = alias_version(client, fname, PRODUCTION)
    except Exception:
        fv = None
    if fv is None or not fv.run_id:
        raise LookupError(f"{fname} has no production forecaster to size")
    settings = run_settings(client, fv.run_id)
    choice = _sizer_choice(client, registered_sizer_name(symbol, timeframe), policy)
    with tempfile.TemporaryDirectory() as tmp:
        estimator, scaler = load_run_model(client, fv.run_id, Path(tmp))
        sizer = None
        if choice["policy"] == "ppo":
            sizer = load_sizer(client.download_artifacts(choice["run"].info.run_id,
                                                         POLICY_ARTIFACT, tmp))
    fs, candles = rebuild_features(settings, data, keep_unlabelled=True)
    frame = fs.frame.iloc[-int(bars):]
    if len(frame) < 50:
        raise ValueError(f"only {len(frame)} feature rows to play the policy over (need 50)")
    names = list(estimator.feature_names_)
    starts = stages.gap_starts(pd.DatetimeIndex(frame.index), timeframe)
    X = scaler.transform(frame[names].to_numpy(np.float64)).astype(np.float32)
    forecast = np.asarray(estimator.predict(X, starts=starts), dtype=np.float64)
    ts = pd.DatetimeIndex(frame.index)
    nxt = np.nan_to_num(frame["next_return"].to_numpy(np.float64))  # the last: unknown yet
    low, high = intrabar_returns(ts, candles, timeframe, nxt)
    onehot = None
    if sizer is not None and any(n.startswith("regime_") for n in sizer.observation_names):
        from huracan.regime.detection import HMMRegime, realized_volatility_24h, regime_features
        from huracan.regime.detection import segment_starts as seg_starts

        det = load_detector(client, fv.run_id)
        close = pd.Series(candles["close"].to_numpy(np.float64),
                          index=pd.DatetimeIndex(candles["timestamp"]))
        seg = seg_starts(close.index, timeframe)
        if isinstance(det, HMMRegime):
            labels = det.classify(regime_features(close, timeframe, segment_start=seg))[0]
        else:
            labels = det.classify(realized_volatility_24h(close, timeframe, segment_start=seg))
        onehot = regime_onehot(pd.Series(labels, index=close.index).reindex(ts).to_numpy())
    fee = settings.backtest.fee
    run = choice["run"]
    params = run.data.params if run is not None else {}
    s = SizerSettings(target_vol=float(params.get("sizer.target_vol", 0.5)),
                      kelly_fraction=float(params.get("sizer.kelly_fraction", 0.5)))
    funding = load_funding(params.get("sizer.funding", "none"), symbol, ts.min(), ts.max(), None)
    fr = None
    if funding is not None:
        from huracan.sizing.env import funding_per_bar

        fr = funding_per_bar(ts, funding, timeframe)
    sd = SizingData(timestamps=ts, forecast=np.nan_to_num(forecast), next_return=nxt,
                    regime=None if onehot is None else onehot.to_numpy(),
                    funding=fr, low_return=low, high_return=high)
    if sizer is not None:
        cfg = sizer.eval_config()
        env = UnitActions(SizingEnv(sd, cfg))
        out = run_episode(env, sizer.act, start=0, pad=True)
    else:
        env_keys = {k.removeprefix("env."): v for k, v in params.items() if k.startswith("env.")}
        cfg = EnvConfig(fee=fee, periods_per_year=bars_per_year(timeframe))
        if env_keys:
            cfg = replace(cfg, max_leverage=float(env_keys.get("max_leverage", 5.0)),
                          maintenance_margin=float(env_keys.get("maintenance_margin", 0.005)))
        cfg = replace(cfg, random_start=False, episode_bars=None)
        rule = {"fixed": lambda: bl.fixed_fraction(sd, cfg),
                "sign_rule": lambda: bl.sign_rule(sd, cfg, settings.backtest.threshold),
                "volatility_target": lambda: bl.volatility_target(sd, cfg, s.target_vol),
                "kelly": lambda: bl.kelly(sd, cfg, s.kelly_fraction)}[choice["policy"]]
        out = rule().returns
    last = out.iloc[-1]
    liquidated = "".join(str(x) for x in out["liquidated"] if x)
    size, lev = float(last["size"]), float(last["leverage"])
    sign = float(np.sign(forecast[-1])) if not (cfg.long_only and forecast[-1] < 0) else 0.0
    return SizeSuggestion(
        symbol=symbol, timeframe=timeframe, last_bar=str(ts[-1]), forecast=float(forecast[-1]),
        size=size, leverage=lev, position=sign * size * lev, policy=choice["policy"],
        forecaster_version=str(fv.version), sizer_version=choice["version"],
        sizer_run_id=None if run is None else run.info.run_id, reason=choice["reason"],
        bars_played=len(out), liquidated_in_window=liquidated)
