"""The sizer's training job (``python -m huracan.sizer``): data, PPO with early stopping, the
baselines on the same bars, one MLflow run, the registry gate; and the live suggestion
(``huracan size``).

Data: the stitched walk-forward OOS predictions of the forecaster (its run's
``backtest/oos_returns.parquet``: every forecast made by a model that never trained on that bar),
the run's regime (one-hot), the next bar's low/high relative to the close (the liquidation check
sees wicks), and the execution model's bars of those rows (:func:`sizer_bars`:
:func:`huracan.evaluation.execution.market_bars` with the forecaster run's ``backtest`` settings:
fills at the next open by default, fee + half-spread + slippage (+ impact), borrow on spot shorts,
and the perpetual's funding legs when ``../shared/data`` (or the store) has its funding): the
sizer trades on the bars and costs the forecaster's backtest used. The series is cut by time
into three parts (``sizer.split``, default
60/20/20 %): PPO trains on random 30-day episodes of the first, early-stops on the second
(deterministic episodes over the whole part, SB3 ``EvalCallback`` +
``StopTrainingOnNoModelImprovement``, the best evaluation's policy kept), and the last part is
touched once, by every policy alike: PPO, fixed size 1 x 1, the forecaster's sign rule,
volatility targeting and fractional Kelly (:mod:`huracan.sizing.baselines`).

Which policy to serve is decided on the validation part (``sizer.serve``: ``auto`` = the best
composite score there), and cash is the floor: the chosen policy is served only when it beats
``flat`` (size 0) on the unseen evaluation part
(:func:`huracan.evaluation.evidence.beats_cash`: net return > 0 with PSR >= ``registry.min_psr``,
default 0.9), else the sizer serves ``flat``, the reason in the run (tag ``serve_reason``,
``sizer/cash_floor.json``). The registry version (``huracan-sizer-<SYMBOL>-<tf>``) goes through
a gate of the same shape as the forecasters' (:func:`register_sizer`): a run serving flat is
promoted so production answers size 0 (unless the production PPO still beats cash on the same
bars); otherwise the candidate PPO must beat cash, must not lose to the best baseline, and is
compared with the production sizer on the same bars (5 % tolerance); every decision is a
``registry_events`` row.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from huracan.regime.detection import REGIMES, UNKNOWN
from huracan.sizing.baselines import FLAT, SizingResult, comparison_table, evaluate_baselines, flat
from huracan.sizing.data import (
    POLICY_ARTIFACT,
    load_funding,
    oos_rows,
    registered_sizer_name,
    sizer_bars,
    sizing_frame,
)
from huracan.sizing.env import EnvConfig, SizingData
from huracan.sizing.portfolio import PortfolioData, evaluate_portfolio_baselines
from huracan.tracking.names import TIME, time_metric

log = logging.getLogger(__name__)

#: the one-hot regime columns, always all five (the observation layout must not depend on which
#: regimes a window happens to contain)
POLICIES = ("ppo", "fixed", "sign_rule", "volatility_target", "kelly")
#: the policies of a several-symbol run (``sizer.symbols``)
PORTFOLIO_POLICIES = ("ppo", "equal_weight", "inverse_volatility")
SUMMARY_METRICS = ("sharpe", "sortino", "max_drawdown", "calmar", "total_return",
                   "composite_score", "n_trades", "psr", "mean_exposure", "mean_leverage")


class SizerError(RuntimeError):
    """No forecaster to learn from, or a forecaster without walk-forward OOS predictions."""


@dataclass
class SizerSettings:
    """``sizer.*`` of ``conf/sizer.yaml`` (documented there)."""

    forecaster: str = "production"
    forecaster_run: str | None = None
    symbols: list[str] | None = None
    forecaster_runs: list[str] | None = None
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    total_timesteps: int = 100_000
    eval_every: int = 8192
    patience: int = 3
    max_leverage: float = 5.0
    maintenance_margin: float = 0.005
    drawdown_limit: float | None = None
    drawdown_penalty: float = 1.0
    consistency_bonus: float = 1e-4
    reward_scale: float = 100.0
    episode_bars: int = 720
    long_only: bool = False
    funding: str = "files"
    target_vol: float = 0.5
    kelly_fraction: float = 0.5
    serve: str = "auto"
    retrain_every: str = "7d"
    register: bool = True
    tolerance: float = 0.05
    ppo: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.split = tuple(float(x) for x in self.split)  # type: ignore[assignment]
        if len(self.split) != 3 or min(self.split) <= 0 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"sizer.split must be three positive fractions summing to 1, got "
                             f"{list(self.split)}")
        if self.funding not in ("files", "store", "none"):
            raise ValueError(f"sizer.funding must be files, store or none, got {self.funding!r}")
        if self.symbols is not None:
            self.symbols = [str(x) for x in self.symbols]
            if len(self.symbols) < 2 or len(set(self.symbols)) != len(self.symbols):
                raise ValueError(f"sizer.symbols must list at least 2 distinct symbols, got "
                                 f"{self.symbols}")
        if self.forecaster_runs:
            self.forecaster_runs = [str(x) for x in self.forecaster_runs]
            if self.symbols is None or len(self.forecaster_runs) != len(self.symbols):
                raise ValueError("sizer.forecaster_runs needs sizer.symbols, one run id each")
        if self.serve not in ("auto", *POLICIES, *PORTFOLIO_POLICIES, FLAT):
            raise ValueError(f"sizer.serve must be auto, {FLAT} or one of {POLICIES}, got "
                             f"{self.serve!r}")

    def env_config(self, fee: float, periods_per_year: float) -> EnvConfig:
        """The training environment (random 30-day episodes by default)."""
        return EnvConfig(max_leverage=float(self.max_leverage), fee=float(fee),
                         maintenance_margin=float(self.maintenance_margin),
                         drawdown_limit=self.drawdown_limit,
                         drawdown_penalty=float(self.drawdown_penalty),
                         consistency_bonus=float(self.consistency_bonus),
                         reward_scale=float(self.reward_scale),
                         episode_bars=int(self.episode_bars), random_start=True,
                         periods_per_year=periods_per_year, long_only=bool(self.long_only))


#: the top-level keys of a composed ``sizer`` config (Hydra's own ``hydra`` node aside)
SIZER_CONFIG_KEYS = ("alerts", "data", "db", "registry", "seed", "sizer", "tracking")


def sizer_settings(cfg: dict[str, Any]) -> SizerSettings:
    """The typed ``sizer`` node of a resolved ``conf/sizer.yaml``, after checking every key of
    the config: the top level (:data:`SIZER_CONFIG_KEYS`), the shared groups (``data``,
    ``tracking``, ``registry``, ``db`` against their :mod:`huracan.settings` classes, ``alerts``
    against its target), ``sizer`` against :class:`SizerSettings` and ``sizer.ppo`` against
    :class:`~huracan.sizing.ppo.PPOConfig`.

    Raises:
        huracan.settings.UnknownKeyError: a key no setting knows, named with its group.
        KeyError: no ``data`` node.
        ValueError: an invalid value.
    """
    from huracan.settings import (
        DataSettings,
        DbSettings,
        RegistrySettings,
        TrackingSettings,
        build,
        check_keys,
        check_target_kwargs,
        known_fields,
    )
    from huracan.sizing.ppo import PPOConfig

    check_keys({k: v for k, v in cfg.items() if k != "hydra"}, "", SIZER_CONFIG_KEYS)
    build(DataSettings, cfg["data"], "data")
    build(TrackingSettings, cfg.get("tracking"), "tracking")
    build(RegistrySettings, cfg.get("registry"), "registry")
    build(DbSettings, cfg.get("db"), "db")
    if cfg.get("alerts"):
        check_target_kwargs(cfg["alerts"], "alerts")
    node = dict(cfg.get("sizer") or {})
    check_keys(node.get("ppo"), "sizer.ppo", known_fields(PPOConfig))
    settings: SizerSettings = build(SizerSettings, node, "sizer")
    return settings


# ----------------------------------------------------------------------------------- training
@dataclass
class SizerOutcome:
    """What :func:`train_and_evaluate` produced: ``val`` and ``test`` hold every policy's
    result (``flat`` included), ``serve`` the policy to serve (``flat`` when the chosen one
    does not beat cash on the evaluation part), ``serve_reason`` why, ``cash`` the cash
    verdict's figures (:class:`huracan.evaluation.evidence.CashVerdict`)."""

    sizer: Any
    data: SizingData | PortfolioData
    bounds: dict[str, str]
    rows: dict[str, int]
    val: dict[str, SizingResult]
    test: dict[str, SizingResult]
    val_curve: pd.DataFrame
    serve: str
    seconds: dict[str, float]
    serve_reason: str = ""
    cash: dict[str, Any] = field(default_factory=dict)


def _best_on(results: dict[str, SizingResult], metric: str = "composite_score") -> str:
    """The best policy on ``metric`` (flat aside: it enters through the cash floor)."""
    scores = {k: float(v.metrics.as_dict()[metric]) for k, v in results.items() if k != FLAT}
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    return max(finite, key=lambda k: finite[k]) if finite else "fixed"


def cash_floor(chosen: str, test: dict[str, SizingResult], min_psr: float,
               bars: int) -> tuple[str, str, dict[str, Any]]:
    """The sizer's cash floor: the policy ``chosen`` on validation is served only when it beats
    cash on the evaluation part (:func:`huracan.evaluation.evidence.beats_cash` of its net
    returns and trades at ``min_psr``); otherwise ``flat``.

    Returns:
        ``(serve, reason, verdict)``: the policy to serve, why, and the verdict's figures.
    """
    from dataclasses import asdict

    from huracan.evaluation.evidence import beats_cash

    if chosen == FLAT:
        return FLAT, "sizer.serve=flat: serving flat (size 0)", {}
    res = test[chosen]
    verdict = beats_cash(res.returns["strategy_return"].to_numpy(np.float64),
                         int(res.metrics.n_trades), min_psr, what=chosen)
    figures = asdict(verdict)
    if verdict.beats:
        return chosen, f"{verdict.reason} on the {bars} unseen bars: serving {chosen}", figures
    return FLAT, (f"{verdict.reason} on the {bars} unseen bars: nothing served beats cash, "
                  "the sizer serves flat (size 0)"), figures


def train_and_evaluate(data: SizingData | PortfolioData, s: SizerSettings, env: EnvConfig,
                       seed: int, threshold: float = 0.0, min_psr: float = 0.9) -> SizerOutcome:
    """PPO on the first part, early stopping on the second, every policy on the third
    (the single-symbol baselines and ``flat``, or the portfolio ones for a
    :class:`PortfolioData`); ``threshold`` is the forecaster's own entry threshold (a return,
    fraction) for ``sign_rule``. The policy chosen on validation (``sizer.serve``) is served
    only when it beats cash on the third part at ``min_psr`` (:func:`cash_floor`), else
    ``flat``.

    Raises:
        ValueError: a part with fewer than ``2 x episode_bars`` rows for training or fewer than
            50 rows for validation/evaluation.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnNoModelImprovement

    from huracan.sizing.ppo import PPOConfig, evaluate_ppo, make_env, train_ppo

    n = len(data)
    a = round(s.split[0] * n)
    b = round((s.split[0] + s.split[1]) * n)
    if a < 2 * (env.episode_bars or 50):
        raise ValueError(f"the sizer's training part has {a} bars, fewer than two episodes of "
                         f"{env.episode_bars}: use a longer walk-forward OOS series")
    if b - a < 50 or n - b < 50:
        raise ValueError(f"validation ({b - a}) and evaluation ({n - b}) parts need >= 50 bars")
    ppo_cfg = PPOConfig(**{"seed": seed, "total_timesteps": int(s.total_timesteps), **s.ppo})
    eval_cfg = replace(env, random_start=False, episode_bars=None)
    val_env = make_env(data.slice(a, b), eval_cfg)
    timer: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stop = StopTrainingOnNoModelImprovement(max_no_improvement_evals=int(s.patience),
                                                min_evals=1, verbose=0)
        cb = EvalCallback(val_env, eval_freq=max(1, int(s.eval_every) // ppo_cfg.n_envs),
                          n_eval_episodes=1, deterministic=True, best_model_save_path=tmp,
                          log_path=tmp,  # SB3 keeps the evaluation history only with a path
                          callback_after_eval=stop, verbose=0)
        t0 = time.perf_counter()
        sizer = train_ppo(data, a, env, ppo_cfg, callback=cb)
        timer["train"] = time.perf_counter() - t0
        best = Path(tmp) / "best_model.zip"
        if best.exists():
            sizer.policy = PPO.load(best, device="cpu")
        steps = np.asarray(cb.evaluations_timesteps, dtype=np.int64)
        rewards = np.asarray([float(np.mean(r)) for r in cb.evaluations_results])
    val_curve = pd.DataFrame({"timesteps": steps, "val_reward": rewards})
    t0 = time.perf_counter()
    def baselines(part: SizingData | PortfolioData) -> dict[str, SizingResult]:
        if isinstance(part, PortfolioData):
            return evaluate_portfolio_baselines(part, eval_cfg)
        return evaluate_baselines(part, eval_cfg, target_vol=s.target_vol,
                                  kelly_fraction=s.kelly_fraction,
                                  threshold=threshold) | {FLAT: flat(part, eval_cfg)}

    val = {"ppo": evaluate_ppo(sizer, data, a, b)} | baselines(data.slice(a, b))
    test = {"ppo": evaluate_ppo(sizer, data, b)} | baselines(data.slice(b))
    timer["evaluate"] = time.perf_counter() - t0
    chosen = _best_on(val) if s.serve == "auto" else s.serve
    serve, reason, cash = cash_floor(chosen, test, min_psr, n - b)
    ts = data.timestamps
    bounds = {"train_start": str(ts[0]), "train_end": str(ts[a - 1]), "val_start": str(ts[a]),
              "val_end": str(ts[b - 1]), "test_start": str(ts[b]), "test_end": str(ts[-1])}
    return SizerOutcome(sizer, data, bounds, {"train": a, "val": b - a, "test": n - b}, val,
                        test, val_curve, serve, timer, reason, {"chosen": chosen, **cash})


# ----------------------------------------------------------------------------------- MLflow
def _flat(prefix: str, results: dict[str, SizingResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, res in results.items():
        summary = res.summary()
        for m in SUMMARY_METRICS:
            v = summary.get(m)
            if isinstance(v, int | float) and math.isfinite(float(v)):
                out[f"{prefix}_{name}_{m}"] = float(v)
    return out


def sizing_figure(outcome: SizerOutcome, close: pd.Series | None, title: str) -> Any:
    """Price coloured by regime (top), PPO size and leverage (middle) and the equity of every
    policy (bottom) over the evaluation bars; date axes, legends and the title's second line
    (the bars' dates) as every run figure (:mod:`huracan.evaluation.plots`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from huracan.evaluation.plots import concise_dates, legend_outside, window_title

    ppo = outcome.test["ppo"].returns
    ts = pd.DatetimeIndex(ppo["timestamp"])
    fig, ax = plt.subplots(3, 1, figsize=(12, 8), sharex=True, layout="constrained",
                           gridspec_kw={"height_ratios": [2, 1, 2]})
    if close is not None:
        px = close.reindex(ts)
        ax[0].plot(ts, px.to_numpy(), color="0.3", lw=0.8)
        b = outcome.rows["train"] + outcome.rows["val"]
        onehot = getattr(outcome.data, "regime", None)
        if onehot is not None:
            reg = onehot[b:].argmax(axis=1)
            colors = {0: "tab:green", 1: "tab:blue", 2: "tab:orange", 3: "tab:red", 4: "0.7"}
            for k, name in enumerate((*REGIMES, UNKNOWN)):
                m = reg == k
                if m.any():
                    ax[0].scatter(ts[m], px.to_numpy()[m], s=2, color=colors[k], label=name)
            legend_outside(ax[0], markerscale=4)
    ax[0].set_ylabel("price")
    ax[1].plot(ts, ppo["size"], lw=0.7, label="size")
    ax[1].plot(ts, ppo["leverage"], lw=0.7, label="leverage")
    legend_outside(ax[1])
    ax[1].set_ylabel("PPO action")
    for name, res in outcome.test.items():
        ax[2].plot(ts, res.returns["equity"], lw=0.8, label=name)
    ax[2].set_ylabel("equity")
    legend_outside(ax[2])
    for a in ax:
        concise_dates(a)
    fig.suptitle(window_title(title, ts), fontsize=11)
    return fig


def log_outcome(outcome: SizerOutcome, s: SizerSettings, env: EnvConfig, *, symbol: str,
                timeframe: str, forecaster: dict[str, Any], close: pd.Series | None,
                resolved: dict[str, Any]) -> str:
    """Everything into the active MLflow run; returns its id."""
    import mlflow

    from huracan.secrets import mask_url
    from huracan.sizing.ppo import save_sizer
    from huracan.tracking.run import log_figure

    run = mlflow.active_run()
    assert run is not None
    mlflow.set_tags({"huracan.role": "sizer", "symbol": symbol, "timeframe": timeframe,
                     "model_type": "ppo_sizer", "forecaster_run_id": forecaster["run_id"],
                     "forecaster_version": str(forecaster.get("version")),
                     "serve_policy": outcome.serve, "serve_reason": outcome.serve_reason[:5000],
                     **{f"sizer_{k}": v for k, v in outcome.bounds.items()}})
    params = {f"env.{k}": v for k, v in env.as_dict().items()}
    params |= {f"ppo.{k}": v for k, v in outcome.sizer.ppo_config.as_dict().items()}
    params |= {"sizer.split": list(s.split), "sizer.eval_every": s.eval_every,
               "sizer.patience": s.patience, "sizer.target_vol": s.target_vol,
               "sizer.kelly_fraction": s.kelly_fraction, "sizer.funding": s.funding,
               "sizer.retrain_every": s.retrain_every, "data.path": mask_url(
                   str(forecaster.get("data_path", "")))}
    bt = forecaster.get("backtest")
    if bt is not None:  # the execution model the sizer traded on (serving replays on it)
        params |= {f"backtest.{k}": v for k, v in asdict(bt).items()}
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.log_metrics(_flat("val", outcome.val) | _flat("test", outcome.test))
    if outcome.cash:
        mlflow.log_metrics({"cash_beaten": float(bool(outcome.cash.get("beats"))),
                            "cash_psr": float(outcome.cash.get("psr", 0.0)),
                            "cash_min_psr": float(outcome.cash.get("min_psr", 0.0))})
        mlflow.log_dict({"serve": outcome.serve, "reason": outcome.serve_reason,
                         **outcome.cash}, "sizer/cash_floor.json")
    mlflow.log_metrics({"train_bars": outcome.rows["train"], "val_bars": outcome.rows["val"],
                        "test_bars": outcome.rows["test"],
                        time_metric("train"): outcome.seconds["train"],
                        time_metric("evaluate"): outcome.seconds["evaluate"],
                        f"{TIME}train_steps_per_s": outcome.sizer.steps_per_second})
    curve = outcome.sizer.learning_curve
    for row in curve.itertuples():
        mlflow.log_metric("train_episode_reward", float(row.episode_reward),
                          step=int(row.timesteps))
    for row in outcome.val_curve.itertuples():
        mlflow.log_metric("val_reward", float(row.val_reward), step=int(row.timesteps))
    mlflow.log_text(curve.to_csv(index=False), "sizer/learning_curve.csv")
    mlflow.log_text(outcome.val_curve.to_csv(index=False), "sizer/val_curve.csv")
    for part, results in (("val", outcome.val), ("test", outcome.test)):
        table = comparison_table(results)
        mlflow.log_text(table.to_csv(), f"sizer/{part}_comparison.csv")
        mlflow.log_text(table.to_string(float_format=lambda x: f"{x:.4f}") + "\n",
                        f"sizer/{part}_comparison.txt")
    mlflow.log_dict(resolved, "config/resolved.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        path = save_sizer(outcome.sizer, Path(tmp) / "policy.zip")
        mlflow.log_artifact(str(path), "sizer")
        test = pd.concat([r.returns.assign(policy=k) for k, r in outcome.test.items()])
        out = Path(tmp) / "test_returns.parquet"
        test.to_parquet(out, index=False)
        mlflow.log_artifact(str(out), "sizer")
    log_figure(sizing_figure(outcome, close, f"{symbol} {timeframe}: sizing on unseen bars"),
               "plots/sizing.png")
    return str(run.info.run_id)


# ----------------------------------------------------------------------------------- registry
def _score_champion(client: Any, champ: Any, outcome: SizerOutcome, min_psr: float,
                    evidence: dict[str, Any]) -> tuple[float | None, Any]:
    """The production sizer ``champ`` scored on the candidate's unseen evaluation bars:
    ``(composite score, beats_cash verdict)``, or ``(None, None)`` when there is no champion,
    it serves flat (cash is then the champion), or it cannot be scored on these bars (it trained
    on them, or another data layout: the reason goes into ``evidence``)."""
    from huracan.evaluation.evidence import beats_cash
    from huracan.sizing.ppo import evaluate_ppo, load_sizer

    if champ is None or not champ.run_id:
        return None, None
    champ_policy = client.get_run(champ.run_id).data.tags.get("serve_policy", "ppo")
    evidence["champion_serve_policy"] = champ_policy
    if champ_policy == FLAT:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        old = load_sizer(client.download_artifacts(champ.run_id, POLICY_ARTIFACT, tmp))
    try:
        res = evaluate_ppo(old, outcome.data, outcome.rows["train"] + outcome.rows["val"])
    except ValueError as exc:  # it trained on these bars, or another layout
        evidence["champion_not_scored"] = str(exc)
        return None, None
    return float(res.metrics.composite_score), beats_cash(
        res.returns["strategy_return"].to_numpy(np.float64), int(res.metrics.n_trades), min_psr,
        what=f"production v{champ.version}")


def register_sizer(client: Any, engine: Any, run_id: str, outcome: SizerOutcome,
                   s: SizerSettings, name: str, notifier: Any = None,
                   min_psr: float = 0.9) -> dict[str, Any]:
    """Log the pyfunc, register a version of ``name`` and put it through the sizer gate.

    Cash is the floor (:func:`huracan.evaluation.evidence.beats_cash` at ``min_psr`` on the
    unseen evaluation bars):

    - the run serves ``flat`` (nothing it would serve beats cash, :func:`cash_floor`): the
      version is promoted so production serves flat (size 0) with that reason, unless the
      production sizer's PPO still beats cash on the same bars (then it stays);
    - otherwise the candidate is PPO's composite score on those bars; it is rejected when it is
      not finite, when PPO does not beat cash there, when the best baseline beats it there, or
      when the production sizer scores better by more than ``s.tolerance`` (relative) on the
      same bars (:func:`huracan.registry.gate.decide`); a production sizer serving flat is no
      champion to beat (cash is).

    The decision is taken and applied as the model gate's, by
    :func:`huracan.registry.decision.apply_decision` under the per-model registry lock:
    ``staging`` moves to the version, the champion is read, the version is tagged
    (``huracan.gate``, ``huracan.gate_reason``, ``huracan.serve_policy``; on promotion
    ``huracan.previous_production``, ``huracan.score_at_promotion``,
    ``huracan.promoted_window_end`` = the last evaluation bar) before ``production`` moves, the
    ``registry_events`` row is written, and a rejection or a promotion to flat alerts.

    Returns:
        the decision (``event``, ``reason``, ``version``, ``serve``).
    """
    import mlflow

    from huracan.evaluation.evidence import beats_cash
    from huracan.registry.decision import Decision, apply_decision
    from huracan.registry.gate import GateDecision, decide
    from huracan.registry.promotion import register_version
    from huracan.sizing.pyfunc import SizerPyfunc

    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, POLICY_ARTIFACT, tmp)
        info = mlflow.pyfunc.log_model(name="model", python_model=SizerPyfunc(),
                                       artifacts={"policy": local})
    manifest = {"run_id": run_id, "model_type": "ppo_sizer", "gate_metric": "composite_score",
                **{f"sizer_{k}": v for k, v in outcome.bounds.items()}}
    version = register_version(client, name, info.model_uri, manifest)
    cand = float(outcome.test["ppo"].metrics.composite_score)
    baselines = {k: float(v.metrics.composite_score) for k, v in outcome.test.items()
                 if k not in ("ppo", FLAT)}
    best_base = max(baselines, key=lambda k: baselines[k])
    bars = outcome.rows["test"]

    def sizer_gate(_: Any, champ: Any) -> Decision:
        """The rule above, on the production sizer ``champ`` (lock held)."""
        evidence: dict[str, Any] = {"eval_start": outcome.bounds["test_start"],
                                    "eval_end": outcome.bounds["test_end"],
                                    "eval_bars": bars, "baselines": baselines,
                                    "serve_policy": outcome.serve,
                                    "serve_reason": outcome.serve_reason, "cash": outcome.cash}
        champ_score, champ_cash = _score_champion(client, champ, outcome, min_psr, evidence)
        if outcome.serve == FLAT:
            if champ is not None and champ_cash is not None and champ_cash.beats:
                promote, reason = False, (f"{outcome.serve_reason}; but {champ_cash.reason}: "
                                          f"production v{champ.version} stays")
            else:
                promote, reason = True, outcome.serve_reason
            verdict = GateDecision(promote, cand, champ_score, s.tolerance, None, reason)
        else:
            ppo = outcome.test["ppo"]
            ppo_cash = beats_cash(ppo.returns["strategy_return"].to_numpy(np.float64),
                                  int(ppo.metrics.n_trades), min_psr, what="PPO")
            evidence["ppo_cash"] = ppo_cash.reason
            if not math.isfinite(cand):
                reason = f"PPO composite_score is not finite ({cand}): rejected"
            elif not ppo_cash.beats:
                reason = f"{ppo_cash.reason} on the {bars} unseen bars: rejected"
            elif baselines[best_base] > cand:
                reason = (f"PPO composite_score {cand:.4f} < {best_base} "
                          f"{baselines[best_base]:.4f} on the same {bars} unseen bars: "
                          "rejected, the baselines stay")
            else:
                reason = ""
            verdict = GateDecision(False, cand, champ_score, s.tolerance, None, reason) \
                if reason else decide(cand, champ_score, s.tolerance, "composite_score")
        return Decision(verdict, "promoted" if verdict.promote else "rejected",
                        "composite_score", bars, evidence,
                        window_end=outcome.bounds["test_end"],
                        tags={"serve_policy": outcome.serve},
                        note=" (serving flat)" if verdict.promote and outcome.serve == FLAT
                        else "")

    d = apply_decision(client, engine, name, version.version, sizer_gate,
                       notifier=notifier).decision
    print(f"registry: {name} v{version.version} {d.event.upper()}: {d.reason}", flush=True)
    return {"event": d.event, "reason": d.reason, "version": str(version.version),
            "serve": outcome.serve}


# ----------------------------------------------------------------------------------- job
def forecaster_run(client: Any, symbol: str, timeframe: str, s: SizerSettings) -> dict[str, Any]:
    """The forecaster run the sizer learns from: ``sizer.forecaster_run`` or the holder of
    ``sizer.forecaster`` (an alias of ``huracan-<SYMBOL>-<tf>``).

    Raises:
        SizerError: neither exists, or the alias holds the cash policy.
    """
    from huracan.registry.cash import cash_reason, is_cash
    from huracan.registry.promotion import alias_version, registered_model_name

    if s.forecaster_run:
        return {"run_id": s.forecaster_run, "version": None}
    name = registered_model_name(symbol, timeframe)
    try:
        mv = alias_version(client, name, s.forecaster)
    except Exception:
        mv = None
    if is_cash(mv):
        raise SizerError(f"{s.forecaster} of {name} is cash (position 0): no forecaster to size "
                         f"({cash_reason(mv)}); pass sizer.forecaster_run=RUN_ID to size a run")
    if mv is None or not mv.run_id:
        raise SizerError(
            f"no {s.forecaster} version of {name}: train a walk-forward forecaster first "
            f"(python -m huracan.train split=walk_forward ...) or pass sizer.forecaster_run=RUN_ID")
    return {"run_id": mv.run_id, "version": mv.version}


def load_oos(client: Any, run_id: str) -> pd.DataFrame:
    """The run's stitched walk-forward OOS frame.

    Raises:
        SizerError: the run has none (a forward split: one test window is too short to learn
            sizing from).
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "backtest/oos_returns.parquet", tmp)
        except Exception:
            raise SizerError(f"run {run_id} has no backtest/oos_returns.parquet: the sizer "
                             "learns from walk-forward OOS predictions (train the forecaster "
                             "with split=walk_forward)") from None
        return pd.read_parquet(path)


def _symbol_data(client: Any, symbol: str, timeframe: str, s: SizerSettings,
                 cfg: dict[str, Any]) -> tuple[dict[str, Any], float, pd.DataFrame, SizingData]:
    """One symbol's forecaster run (with its backtest ``threshold`` and settings), its backtest
    fee, its candles and its :class:`SizingData` (OOS forecasts, intrabar extremes, and the
    execution model's bars: :func:`sizer_bars` with the run's ``backtest`` settings and the
    perpetual's funding of ``sizer.funding``). The run is ``sizer.forecaster_runs[symbol]``
    (several symbols: the run id at the symbol's place in ``sizer.symbols``),
    ``sizer.forecaster_run`` (one symbol) or the holder of the ``sizer.forecaster`` alias.

    Raises:
        SizerError: no forecaster, a forecaster of another symbol/timeframe, no OOS frame.
    """
    from huracan import stages
    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.rebuild import run_settings

    pinned = s.forecaster_run
    if s.symbols:
        pinned = s.forecaster_runs[s.symbols.index(symbol)] if s.forecaster_runs else None
    fc = forecaster_run(client, symbol, timeframe, replace(s, forecaster_run=pinned))
    fsettings = run_settings(client, fc["run_id"])
    if fsettings.data.symbol != symbol or fsettings.data.timeframe != timeframe:
        raise SizerError(f"forecaster run {fc['run_id']} is {fsettings.data.symbol} "
                         f"{fsettings.data.timeframe}, not {symbol} {timeframe}")
    fc["data_path"] = fsettings.data.path
    fc["threshold"] = float(fsettings.backtest.threshold)
    fc["backtest"] = fsettings.backtest
    oos = load_oos(client, fc["run_id"])
    candles = stages.load_validated(fsettings.data, log_quality=False)
    rows = oos_rows(oos)
    bar = timeframe_to_timedelta(timeframe)
    funding = load_funding(s.funding, symbol, rows.min(), rows.max() + 2 * bar,
                           cfg.get("db", {}).get("url"))
    fine = None
    if fsettings.backtest.fill == "delay":
        inputs = stages.execution_inputs(fsettings.backtest, fsettings.data, candles,
                                         cfg.get("db", {}).get("url"))
        fine = inputs.fine
    # the sizer trades the perpetual whose funding it charges (no borrow on its shorts)
    bars = sizer_bars(rows, candles, timeframe, fsettings.backtest, funding=funding,
                      perpetual=stages.is_perpetual(symbol) or funding is not None, fine=fine)
    data = SizingData.from_frame(sizing_frame(oos, candles, timeframe, bars), bars=bars)
    log.info("sizer: %s: %d OOS bars from run %s, fill %s, median cost %.2f bps per unit "
             "turnover, funding %s", symbol, len(data), fc["run_id"], bars.fill,
             bars.describe()["cost_bps_median"], "on" if funding is not None else "off")
    return fc, float(fsettings.backtest.fee), candles, data


def run_sizer_job(cfg: dict[str, Any]) -> dict[str, Any]:
    """The whole job from a resolved ``conf/sizer.yaml``; returns a summary dict."""
    import mlflow
    from hydra.utils import instantiate
    from mlflow.tracking import MlflowClient

    from huracan.data.ohlcv import bars_per_year
    from huracan.db import migrate
    from huracan.db.session import make_engine
    from huracan.tracking.run import configure

    s = sizer_settings(cfg)
    data_cfg, tr = cfg["data"], cfg["tracking"]
    timeframe = str(data_cfg["timeframe"])
    symbols = s.symbols or [str(data_cfg["symbol"])]
    symbol = ",".join(symbols)
    seed = int(cfg.get("seed", 42))
    experiment_id = configure(tr.get("tracking_uri"), Path(tr["store_dir"]),
                              tr["experiment_name"], tr.get("artifact_location"))
    client = MlflowClient()
    t0 = time.perf_counter()
    loaded = [_symbol_data(client, sym, timeframe, s, cfg) for sym in symbols]
    fc, fee, candles = loaded[0][0], loaded[0][1], loaded[0][2]
    data: SizingData | PortfolioData = loaded[0][3]
    if s.symbols:
        data = PortfolioData.align({sym: x[3] for sym, x in zip(symbols, loaded, strict=True)})
        fc = {"run_id": ",".join(x[0]["run_id"] for x in loaded),
              "version": ",".join(str(x[0]["version"]) for x in loaded),
              "data_path": ",".join(str(x[0]["data_path"]) for x in loaded)}
        fee = max(x[1] for x in loaded)
    env = s.env_config(fee, bars_per_year(timeframe))
    prep = time.perf_counter() - t0
    log.info("sizer: %d OOS bars of %s %s (%s .. %s)", len(data), symbol, timeframe,
             data.timestamps.min(), data.timestamps.max())
    min_psr = float((cfg.get("registry") or {}).get("min_psr", 0.9))
    outcome = train_and_evaluate(data, s, env, seed, threshold=float(fc.get("threshold", 0.0)),
                                 min_psr=min_psr)
    outcome.seconds["data"] = prep
    close = (None if s.symbols else
             candles.set_index(pd.DatetimeIndex(candles["timestamp"]))["close"])
    name = registered_sizer_name(symbol, timeframe)
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=f"sizer-{symbol.replace('/', '')}-{timeframe}"):
        run_id = log_outcome(outcome, s, env, symbol=symbol, timeframe=timeframe,
                             forecaster=fc, close=close, resolved=cfg)
        decision = None
        if s.symbols:
            log.info("sizer: several symbols: the run is logged, not registered (huracan size "
                     "serves one symbol's sizer)")
        elif s.register and cfg.get("registry", {}).get("enabled", True):
            engine = make_engine(cfg.get("db", {}).get("url"))
            try:
                migrate.upgrade(engine)
                decision = register_sizer(client, engine, run_id, outcome, s, name,
                                          instantiate(dict(cfg["alerts"]))
                                          if cfg.get("alerts") else None, min_psr=min_psr)
            finally:
                engine.dispose()
    table = comparison_table(outcome.test)
    cols = ["sharpe", "sortino", "max_drawdown", "calmar", "total_return", "psr", "n_trades",
            "mean_exposure", "mean_leverage", "liquidated"]
    if s.symbols:
        weights = outcome.test["ppo"].returns[[f"weight:{x}" for x in symbols]].mean()
        print("PPO mean allocation on the unseen part: " + ", ".join(
            f"{k.removeprefix('weight:')} {v:.2f}" for k, v in weights.items()))
    print(f"\nsizing on the unseen part: {outcome.rows['test']} bars {outcome.bounds['test_start']}"
          f" .. {outcome.bounds['test_end']} (PPO trained on {outcome.rows['train']} bars in "
          f"{outcome.seconds['train']:.1f} s, early-stopped on {outcome.rows['val']}); served "
          f"policy: {outcome.serve} ({outcome.serve_reason})")
    print(table[cols].to_string(float_format=lambda x: f"{x:.3f}"), flush=True)
    return {"run_id": run_id, "registered_model": name, "decision": decision,
            "serve": outcome.serve, "serve_reason": outcome.serve_reason, "rows": outcome.rows,
            "seconds": outcome.seconds,
            "test": {k: v.summary() for k, v in outcome.test.items()}}
