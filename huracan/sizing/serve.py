"""The suggested size and leverage for the latest bar (``huracan size BTC/USDT --timeframe 1h``).

1. The production forecaster of ``huracan-<SYMBOL>-<tf>`` forecasts the last ``bars`` bars of
   its data (features rebuilt through the same stages, the latest bar included although its label
   is not known yet).
2. The policy: the production sizer of ``huracan-sizer-<SYMBOL>-<tf>`` serves the policy its run
   chose (tag ``serve_policy``: PPO, a baseline, or ``flat`` when nothing beat cash on its
   unseen bars: size 0, with the run's ``serve_reason``); without a production sizer, ``flat``
   when the latest sizer run says so, else the best baseline on the validation part of the
   latest sizer run; without any sizer run, ``fixed`` (size 1, leverage 1). ``policy=``
   overrides. A production forecaster or sizer that is the ``cash`` policy
   (:mod:`huracan.registry.cash`) answers size 0, position 0, and why.
3. The policy is played over those bars from a flat start (the environment's rules on the
   execution model's bars of the sizer run's ``backtest`` settings: fills, costs, funding legs,
   liquidation; the agent's own recent PnL and drawdown are part of the PPO observation), and
   the action of the last bar is the suggestion.

The replay itself (:class:`ReplayPolicy`, :func:`sizing_inputs`, :func:`replay`) takes
already-computed per-bar forecasts, so the served forecaster
(:func:`huracan.serving.raw.predict_candles`) replays the production sizer over the bars it
answers with the same code.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.evidence import CASH
from huracan.evaluation.execution import MarketBars
from huracan.sizing.baselines import FLAT
from huracan.sizing.env import EnvConfig, SizingData

BASELINE_POLICIES = ("fixed", "sign_rule", "volatility_target", "kelly")
#: every policy a sizer can serve: PPO, the baselines, and flat (cash: size 0)
SERVABLE = ("ppo", *BASELINE_POLICIES, FLAT)


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
    #: the candles the forecast was computed from (the prediction log's inputs; not printed)
    inputs: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "inputs"}

    def describe(self) -> str:
        side = "long" if self.position > 0 else "short" if self.position < 0 else "flat"
        return (f"{self.symbol} {self.timeframe} at bar {self.last_bar}: forecast "
                f"{self.forecast:+.5f} -> {side}, size {self.size:.3f} x leverage "
                f"{self.leverage:.2f} = position {self.position:+.3f} of equity\n"
                f"policy {self.policy} (sizer v{self.sizer_version or '-'}, forecaster "
                f"v{self.forecaster_version}): {self.reason}")


def _sizer_choice(client: Any, name: str, policy: str | None) -> dict[str, Any]:
    from huracan.registry.cash import cash_reason, is_cash
    from huracan.registry.promotion import PRODUCTION, alias_version

    try:
        prod = alias_version(client, name, PRODUCTION)
    except Exception:
        prod = None
    if is_cash(prod) and policy is None:
        return {"run": None, "version": str(prod.version), "policy": CASH,
                "reason": f"production sizer v{prod.version} is cash: {cash_reason(prod)}"}
    if prod is not None and prod.run_id and not is_cash(prod):
        run = client.get_run(prod.run_id)
        chosen = policy or run.data.tags.get("serve_policy", "ppo")
        why = run.data.tags.get("serve_reason") or "best on its validation part"
        return {"run": run, "version": str(prod.version), "policy": chosen,
                "reason": "forced by --policy" if policy else
                f"production sizer v{prod.version}: {why}"}
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception:
        versions = []
    if versions:
        latest = max(versions, key=lambda v: int(v.version))
        run = client.get_run(latest.run_id)
        if policy is None and run.data.tags.get("serve_policy") == FLAT:
            return {"run": run, "version": None, "policy": FLAT,
                    "reason": f"no production sizer; the latest sizer run (v{latest.version}): "
                              f"{run.data.tags.get('serve_reason', 'nothing beats cash')}"}
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


@dataclass
class ReplayPolicy:
    """A sizing policy ready to be replayed over bars.

    Attributes:
        name: ``ppo``, one of :data:`BASELINE_POLICIES` or ``flat`` (size 0 on every bar).
        timeframe: bar size (``1h``), for the baselines' annualisation.
        fee: the forecaster's backtest fee per unit of turnover (fraction): the only cost when
            there is no ``backtest`` (close-fill bars).
        backtest: the execution model's settings the sizer run traded on (its ``backtest.*``
            params), or None (a run logged before them: close fill, ``fee`` only).
        threshold: the forecaster's rule threshold (forward return, fraction), for ``sign_rule``.
        params: the sizer run's logged params (strings: ``sizer.target_vol``,
            ``sizer.kelly_fraction``, ``sizer.funding``, ``env.max_leverage``,
            ``env.maintenance_margin``); empty without a sizer run (the defaults apply).
        sizer: the loaded PPO :class:`huracan.sizing.ppo.SizerModel` (``name == "ppo"`` only).
    """

    name: str
    timeframe: str
    fee: float
    threshold: float = 0.0
    params: dict[str, str] = field(default_factory=dict)
    sizer: Any = None
    backtest: BacktestConfig | None = None

    def __post_init__(self) -> None:
        if self.name not in SERVABLE:
            raise ValueError(f"unknown policy {self.name!r}; expected one of {SERVABLE}")
        if self.name == "ppo" and self.sizer is None:
            raise ValueError("policy ppo needs the loaded PPO sizer")

    @property
    def needs_regime(self) -> bool:
        """Whether the policy observes the regime one-hot (a PPO sizer trained with it)."""
        return self.sizer is not None and any(
            n.startswith("regime_") for n in self.sizer.observation_names)

    def env_config(self) -> EnvConfig:
        """The environment the policy is played in, from the first row over the whole series:
        the PPO sizer's own evaluation config, or for a baseline the forecaster's fee with the
        sizer run's ``max_leverage`` / ``maintenance_margin`` (defaults without a run)."""
        from huracan.data.ohlcv import bars_per_year

        if self.sizer is not None:
            return self.sizer.eval_config()
        cfg = EnvConfig(fee=self.fee, periods_per_year=bars_per_year(self.timeframe))
        env_keys = {k.removeprefix("env."): v for k, v in self.params.items()
                    if k.startswith("env.")}
        if env_keys:
            cfg = replace(cfg, max_leverage=float(env_keys.get("max_leverage", 5.0)),
                          maintenance_margin=float(env_keys.get("maintenance_margin", 0.005)))
        return replace(cfg, random_start=False, episode_bars=None)

    def market(self, timestamps: pd.DatetimeIndex, candles: pd.DataFrame, *,
               funding: pd.DataFrame | None = None) -> MarketBars | None:
        """The execution model's bars the policy is replayed on
        (:func:`huracan.sizing.data.sizer_bars` with :attr:`backtest`; a bar whose next bar is
        not known yet earns 0; ``fill=delay`` replays at the next open, no finer series being
        at hand), or None without :attr:`backtest` (close fill, :attr:`fee` only)."""
        if self.backtest is None:
            return None
        from huracan.sizing.data import sizer_bars

        cfg = self.backtest
        if cfg.fill == "delay":
            cfg = replace(cfg, fill="next_open")
        return sizer_bars(timestamps, candles, self.timeframe, cfg, funding=funding,
                          perpetual=funding is not None, unknown_flat=True)


def load_policy(client: Any, run: Any, name: str, *, fee: float, threshold: float,
                timeframe: str) -> ReplayPolicy:
    """The :class:`ReplayPolicy` ``name`` of the sizer run ``run`` (an MLflow ``Run`` or None):
    downloads and loads the PPO zip (artifact ``sizer/policy.zip``) when ``name == "ppo"``.

    Raises:
        ValueError: an unknown policy, or ``ppo`` without a run.
        mlflow.exceptions.MlflowException: the artifact cannot be downloaded.
    """
    from huracan.sizing.data import POLICY_ARTIFACT
    from huracan.sizing.ppo import load_sizer

    sizer = None
    if name == "ppo":
        if run is None:
            raise ValueError("policy ppo needs a sizer run")
        with tempfile.TemporaryDirectory() as tmp:
            sizer = load_sizer(client.download_artifacts(run.info.run_id, POLICY_ARTIFACT, tmp))
    params = dict(run.data.params) if run is not None else {}
    backtest = None
    if "backtest.fee" in params:
        from huracan.evaluation.execution import backtest_config_from_params

        backtest = backtest_config_from_params(params)
    return ReplayPolicy(name=name, timeframe=timeframe, fee=float(fee),
                        threshold=float(threshold), params=params, sizer=sizer,
                        backtest=backtest)


def sizing_inputs(timestamps: pd.DatetimeIndex, forecast: np.ndarray, next_return: np.ndarray,
                  candles: pd.DataFrame, timeframe: str, *, regimes: Any = None,
                  bars: MarketBars | None = None) -> SizingData:
    """The :class:`SizingData` a policy is replayed over, from per-bar forecasts.

    Args:
        timestamps: the bars (open times, UTC, strictly increasing), ``(n,)``.
        forecast: the forecaster's forward-return forecast per bar (fraction; NaN -> 0), ``(n,)``.
        next_return: ``close_{t+1} / close_t - 1`` per bar (fraction; NaN, e.g. the latest bar
            or the bar before a gap, -> 0), ``(n,)``.
        candles: the candles (``timestamp, high, low, close``) for the next bar's intrabar
            extremes (:func:`huracan.sizing.data.intrabar_returns`).
        timeframe: bar size.
        regimes: regime labels per bar (``low``/``normal``/``high``/``extreme``; others ->
            ``unknown``) for a policy observing them, else None.
        bars: the execution model's bars of the rows (:meth:`ReplayPolicy.market`: fills,
            costs, funding legs); their close-to-close return replaces ``next_return``. None:
            close fill with the policy's fee only.

    Raises:
        ValueError: misaligned lengths or a :class:`SizingData` check failing.
    """
    from huracan.sizing.data import intrabar_returns, regime_onehot

    ts = pd.DatetimeIndex(timestamps)
    nxt = np.nan_to_num(np.asarray(next_return, dtype=np.float64))
    if bars is not None:
        nxt = bars.next_return
    low, high = intrabar_returns(ts, candles, timeframe, nxt)
    onehot = None if regimes is None else regime_onehot(np.asarray(regimes, dtype=object))
    return SizingData(timestamps=ts, forecast=np.nan_to_num(np.asarray(forecast, np.float64)),
                      next_return=nxt, regime=None if onehot is None else onehot.to_numpy(),
                      low_return=low, high_return=high, bars=bars)


def replay(policy: ReplayPolicy, data: SizingData, *,
           restart_after_liquidation: bool = False) -> pd.DataFrame:
    """Play ``policy`` over ``data`` from a flat start at row 0 (the environment's rules).

    Row ``t``'s action uses data known at the close of bar ``t`` only (the environment's
    observation, or a baseline's causal rule), so appending rows never changes earlier rows.

    Args:
        policy: what to play.
        data: the bars (:func:`sizing_inputs`).
        restart_after_liquidation: after a liquidation (margin or drawdown stop) at row ``k``,
            start a new flat account at row ``k + 1`` (a trader refilling the account) instead of
            staying flat to the end (``huracan size``'s replay).

    Returns:
        one row per bar, :data:`huracan.sizing.env.EPISODE_COLUMNS` (``size`` in [0, 1],
        ``leverage`` in [1, max_leverage]; 0 and 0 on flat rows after an unrestarted
        liquidation).
    """
    from huracan.sizing.env import SizingEnv, forecast_volatility, run_episode
    from huracan.sizing.ppo import UnitActions

    cfg = policy.env_config()
    env = UnitActions(SizingEnv(data, cfg)) if policy.sizer is not None else None
    # a restarted baseline keeps the whole window's trailing volatility (no new warm-up)
    vol = data.volatility if data.volatility is not None else forecast_volatility(data, cfg)
    parts: list[pd.DataFrame] = []
    start, n = 0, len(data)
    while True:
        if env is not None:
            out = run_episode(env, policy.sizer.act, start=start, pad=True)
        else:
            part = data if start == 0 else replace(data.slice(start), volatility=vol[start:])
            out = _baseline(policy, part, cfg)
        hit = np.flatnonzero(out["liquidated"].to_numpy(dtype=object) != "")
        if not restart_after_liquidation or len(hit) == 0 or start + int(hit[0]) + 1 >= n:
            parts.append(out)
            break
        parts.append(out.iloc[: int(hit[0]) + 1])
        start += int(hit[0]) + 1
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _baseline(policy: ReplayPolicy, data: SizingData, cfg: EnvConfig) -> pd.DataFrame:
    """The per-bar frame of the baseline ``policy.name`` over ``data`` (the sizer run's
    ``sizer.target_vol`` / ``sizer.kelly_fraction``, defaults 0.5)."""
    from huracan.sizing import baselines as bl

    target_vol = float(policy.params.get("sizer.target_vol", 0.5))
    kelly_fraction = float(policy.params.get("sizer.kelly_fraction", 0.5))
    if policy.name == FLAT:
        result = bl.flat(data, cfg)
    elif policy.name == "fixed":
        result = bl.fixed_fraction(data, cfg)
    elif policy.name == "sign_rule":
        result = bl.sign_rule(data, cfg, policy.threshold)
    elif policy.name == "volatility_target":
        result = bl.volatility_target(data, cfg, target_vol)
    else:
        result = bl.kelly(data, cfg, kelly_fraction)
    return result.returns


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
    from huracan.rebuild import load_run_model, rebuild_features, run_settings
    from huracan.regime.live import load_detector
    from huracan.registry.cash import cash_reason, is_cash
    from huracan.registry.promotion import PRODUCTION, alias_version, registered_model_name
    from huracan.sizing.data import load_funding, registered_sizer_name

    if policy is not None and policy not in SERVABLE:
        raise ValueError(f"unknown policy {policy!r}; expected one of {SERVABLE}")
    fname = registered_model_name(symbol, timeframe)
    try:
        fv = alias_version(client, fname, PRODUCTION)
    except Exception:
        fv = None
    if fv is None or not fv.run_id:
        raise LookupError(f"{fname} has no production forecaster to size")
    if is_cash(fv):  # nothing beats cash: flat, and why
        return SizeSuggestion(
            symbol=symbol, timeframe=timeframe, last_bar="-", forecast=0.0, size=0.0,
            leverage=0.0, position=0.0, policy=CASH, forecaster_version=str(fv.version),
            sizer_version=None, sizer_run_id=None,
            reason=f"production forecaster is cash: {cash_reason(fv)}", bars_played=0,
            liquidated_in_window="")
    settings = run_settings(client, fv.run_id)
    choice = _sizer_choice(client, registered_sizer_name(symbol, timeframe), policy)
    run = choice["run"]
    with tempfile.TemporaryDirectory() as tmp:
        estimator, scaler = load_run_model(client, fv.run_id, Path(tmp))
    pol = None if choice["policy"] == CASH else load_policy(
        client, run, choice["policy"], fee=settings.backtest.fee,
        threshold=settings.backtest.threshold, timeframe=timeframe)
    fs, candles = rebuild_features(settings, data, keep_unlabelled=True)
    frame = fs.frame.iloc[-int(bars):]
    if len(frame) < 50:
        raise ValueError(f"only {len(frame)} feature rows to play the policy over (need 50)")
    names = list(estimator.feature_names_)
    starts = stages.gap_starts(pd.DatetimeIndex(frame.index), timeframe)
    X = scaler.transform(frame[names].to_numpy(np.float64)).astype(np.float32)
    forecast = np.asarray(estimator.predict(X, starts=starts), dtype=np.float64)
    ts = pd.DatetimeIndex(frame.index)
    if pol is None:  # the production sizer is cash: size 0
        return SizeSuggestion(
            symbol=symbol, timeframe=timeframe, last_bar=str(ts[-1]), forecast=float(forecast[-1]),
            size=0.0, leverage=0.0, position=0.0, policy=CASH,
            forecaster_version=str(fv.version), sizer_version=choice["version"],
            sizer_run_id=None, reason=choice["reason"], bars_played=0, liquidated_in_window="",
            inputs=candles)
    labels = None
    if pol.needs_regime:
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
        labels = pd.Series(labels, index=close.index).reindex(ts).to_numpy()
    from huracan.data.ohlcv import timeframe_to_timedelta

    bar = timeframe_to_timedelta(timeframe)
    funding = load_funding(pol.params.get("sizer.funding", "none"), symbol, ts.min(),
                           ts.max() + 2 * bar, None)
    # the last bar's next return is unknown yet: 0
    sd = sizing_inputs(ts, forecast, frame["next_return"].to_numpy(np.float64), candles,
                       timeframe, regimes=labels, bars=pol.market(ts, candles, funding=funding))
    cfg = pol.env_config()
    out = replay(pol, sd)
    last = out.iloc[-1]
    liquidated = "".join(str(x) for x in out["liquidated"] if x)
    size, lev = float(last["size"]), float(last["leverage"])
    sign = float(np.sign(forecast[-1])) if not (cfg.long_only and forecast[-1] < 0) else 0.0
    return SizeSuggestion(
        symbol=symbol, timeframe=timeframe, last_bar=str(ts[-1]), forecast=float(forecast[-1]),
        size=size, leverage=lev, position=sign * size * lev, policy=choice["policy"],
        forecaster_version=str(fv.version), sizer_version=choice["version"],
        sizer_run_id=None if run is None else run.info.run_id, reason=choice["reason"],
        bars_played=len(out), liquidated_in_window=liquidated, inputs=candles)
