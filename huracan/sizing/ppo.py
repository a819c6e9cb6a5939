"""PPO position sizer: train on the early bars, evaluate deterministically on later, unseen bars.

Proximal Policy Optimization (Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
arXiv:1707.06347) as implemented by stable-baselines3 (Raffin et al. 2021, "Stable-Baselines3:
Reliable Reinforcement Learning Implementations", JMLR 22(268); version 2.9.2), on
:class:`~huracan.sizing.env.SizingEnv`.

- The policy acts in ``[-1, 1]^2``, mapped linearly onto the environment's
  ``[0, 1] x [1, max_leverage]`` (stable-baselines3 recommends a normalised action space).
- Training sees ONLY the rows before ``train_stop``: the environment is built on
  ``data.slice(train_start, train_stop)``, so no array it holds reaches a later bar; episodes start
  at random rows of that part (the env's seeded ``np_random``).
- Evaluation builds a fresh environment on the evaluation rows only (its rolling features warm up
  inside them), starts at their first row, acts with the policy's deterministic (mean) action, and
  refuses rows at or before the last training bar.
- Reproducible: ``torch.set_num_threads(1)``, ``set_random_seed(seed)`` (Python, numpy, torch),
  ``PPO(seed=seed)`` (which also seeds the environments and the action space), CPU.

The saved model is the SB3 zip with one more member, ``huracan_sizer.json`` (configs, training
window, observation layout, learning curve), which SB3's loader ignores.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv

from huracan import progress
from huracan.sizing.baselines import SizingResult, result_from_frame
from huracan.sizing.env import EnvConfig, SizingData, SizingEnv, run_episode
from huracan.sizing.portfolio import (
    PortfolioData,
    PortfolioEnv,
    portfolio_result,
    run_portfolio_episode,
)

#: member of the SB3 zip holding the sizer's metadata
META_NAME = "huracan_sizer.json"


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (stable-baselines3 names and defaults unless stated).

    Attributes:
        total_timesteps: environment steps of training (``sizer.total_timesteps``).
        seed: seeds Python, numpy, torch, the environments and the action space.
        learning_rate, n_steps, batch_size, n_epochs, gamma, gae_lambda, clip_range, ent_coef,
            vf_coef, max_grad_norm: as in :class:`stable_baselines3.PPO`.
        net_arch: hidden layers of the policy and value MLPs (shared sizes).
        n_envs: parallel copies of the training env (``DummyVecEnv``; seeds ``seed + i``).

    Raises:
        ValueError: non-positive sizes, or ``batch_size`` larger than ``n_steps x n_envs``.
    """

    total_timesteps: int = 100_000
    seed: int = 0
    learning_rate: float = 3e-4
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    n_envs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(h) for h in self.net_arch))
        if min(self.total_timesteps, self.n_steps, self.batch_size, self.n_epochs,
               self.n_envs) < 1 or self.learning_rate <= 0:
            raise ValueError("PPOConfig: timesteps, n_steps, batch_size, n_epochs, n_envs and "
                             "learning_rate must be positive")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ValueError(f"PPOConfig: batch_size {self.batch_size} > n_steps x n_envs "
                             f"({self.n_steps * self.n_envs})")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        out = asdict(self)
        out["net_arch"] = list(self.net_arch)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PPOConfig:
        """Inverse of :meth:`as_dict`."""
        v = dict(values)
        if "net_arch" in v:
            v["net_arch"] = tuple(v["net_arch"])
        return cls(**v)


#: environment settings of training by default: random 30-day episodes (1h), reward in percent
TRAIN_ENV = EnvConfig(random_start=True, episode_bars=720, reward_scale=100.0)


class UnitActions(gym.ActionWrapper[np.ndarray, np.ndarray, np.ndarray]):
    """Expose a Box action space as ``[-1, 1]^d``, mapped linearly onto the wrapped bounds.

    ``a_env = low + (a + 1) / 2 x (high - low)`` after clipping ``a`` to ``[-1, 1]``; a component
    with ``low == high`` maps to that constant (gymnasium's ``RescaleAction`` refuses it, e.g.
    ``max_leverage = 1``).
    """

    def __init__(self, env: gym.Env[np.ndarray, np.ndarray]) -> None:
        super().__init__(env)
        box = env.action_space
        if not isinstance(box, spaces.Box):
            raise ValueError("UnitActions needs a Box action space")
        self._low = box.low.astype(np.float64)
        self._span = (box.high - box.low).astype(np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=box.shape, dtype=np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        """The wrapped env's action of a unit action."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return np.asarray(self._low + (a + 1.0) * 0.5 * self._span, dtype=np.float32)


@dataclass
class SizerModel:
    """A trained PPO sizer and what it was trained on.

    Attributes:
        policy: the stable-baselines3 PPO model (acts in ``[-1, 1]^2``).
        env_config: the environment settings of training (evaluation uses them with
            ``random_start=False, episode_bars=None``).
        ppo_config: the hyperparameters.
        observation_names: the observation layout it expects.
        train_start, train_end: first and last bar (open times) of the training rows.
        train_bars: number of training rows.
        fit_seconds: wall time of ``learn``.
        learning_curve: one row per finished training episode: ``timesteps`` (cumulative steps
            when it ended, over all envs), ``episode_reward``, ``episode_bars``.
    """

    policy: PPO
    env_config: EnvConfig
    ppo_config: PPOConfig
    observation_names: tuple[str, ...]
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    train_bars: int
    fit_seconds: float
    learning_curve: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def steps_per_second(self) -> float:
        """Training throughput: ``total_timesteps / fit_seconds`` (env steps + updates)."""
        return self.ppo_config.total_timesteps / self.fit_seconds if self.fit_seconds else 0.0

    def eval_config(self) -> EnvConfig:
        """The environment settings of evaluation: the training ones from the first row, whole
        series."""
        return replace(self.env_config, random_start=False, episode_bars=None)

    def act(self, observation: np.ndarray) -> np.ndarray:
        """Deterministic (mean) unit action of one observation, shape ``(2,)`` in ``[-1, 1]``."""
        action, _ = self.policy.predict(observation, deterministic=True)
        return np.asarray(action)

    def meta(self) -> dict[str, Any]:
        """Everything but the policy, JSON-able (stored in the zip as ``huracan_sizer.json``)."""
        import gymnasium
        import stable_baselines3

        return {
            "env_config": self.env_config.as_dict(), "ppo_config": self.ppo_config.as_dict(),
            "observation_names": list(self.observation_names),
            "train_start": self.train_start.isoformat(), "train_end": self.train_end.isoformat(),
            "train_bars": self.train_bars, "fit_seconds": self.fit_seconds,
            "learning_curve": self.learning_curve.to_dict(orient="list"),
            "versions": {"stable_baselines3": stable_baselines3.__version__,
                         "gymnasium": gymnasium.__version__, "torch": torch.__version__},
        }


def make_env(data: SizingData | PortfolioData,
             config: EnvConfig) -> gym.Env[np.ndarray, np.ndarray]:
    """The environment as PPO sees it: ``Monitor(UnitActions(SizingEnv(data, config)))``, or a
    :class:`~huracan.sizing.portfolio.PortfolioEnv` for several symbols."""
    return Monitor(UnitActions(_base_env(data, config)))


def _base_env(data: SizingData | PortfolioData, config: EnvConfig) -> SizingEnv:
    if isinstance(data, PortfolioData):
        return PortfolioEnv(data, config)
    return SizingEnv(data, config)


def train_ppo(data: SizingData | PortfolioData, train_stop: int | str | pd.Timestamp,
              env_config: EnvConfig = TRAIN_ENV, ppo_config: PPOConfig | None = None, *,
              train_start: int | str | pd.Timestamp | None = None,
              callback: BaseCallback | None = None, verbose: int = 0) -> SizerModel:
    """Train a PPO sizer on the rows ``[train_start, train_stop)`` of ``data`` only.

    Args:
        data: the stitched OOS series (one symbol, or a :class:`PortfolioData` of several);
            only the training rows are handed to the environment.
        train_stop: the train/eval boundary: the first row NOT trained on (a row position, or a
            time: the first bar at or after it).
        env_config: environment settings (``random_start`` should be on for training).
        ppo_config: hyperparameters (default :class:`PPOConfig`).
        train_start: the first training row (default 0).
        callback: extra stable-baselines3 callback (e.g. early stopping on a validation env).
        verbose: SB3 verbosity.

    Returns:
        the :class:`SizerModel`, with training time and learning curve.

    Raises:
        ValueError: fewer than 2 training rows.
    """
    cfg = ppo_config or PPOConfig()
    lo = 0 if train_start is None else data.row_of(train_start)
    hi = data.row_of(train_stop)
    if hi - lo < 2:
        raise ValueError(f"training needs at least 2 rows before the boundary, got rows "
                         f"[{lo}, {hi})")
    train = data.slice(lo, hi)
    torch.set_num_threads(1)
    set_random_seed(cfg.seed)
    vec = DummyVecEnv([lambda: make_env(train, env_config) for _ in range(cfg.n_envs)])
    names = vec.envs[0].unwrapped.observation_names  # type: ignore[attr-defined]
    model = PPO(
        "MlpPolicy", vec, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
        batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
        policy_kwargs={"net_arch": list(cfg.net_arch)}, seed=cfg.seed, device="cpu",
        verbose=verbose)
    t0 = time.perf_counter()
    with progress.bar("PPO timesteps", total=cfg.total_timesteps) as shown:
        cb: Any = callback
        if shown.shown:  # no callback at all when nothing is drawn
            bar_cb = _ProgressCallback(shown)
            cb = bar_cb if callback is None else [callback, bar_cb]
        model.learn(total_timesteps=cfg.total_timesteps, callback=cb)
    seconds = time.perf_counter() - t0
    curve = _learning_curve(vec)
    vec.close()
    return SizerModel(policy=model, env_config=env_config, ppo_config=cfg,
                      observation_names=tuple(names), train_start=train.timestamps[0],
                      train_end=train.timestamps[-1], train_bars=len(train),
                      fit_seconds=seconds, learning_curve=curve)


class _ProgressCallback(BaseCallback):
    """stable-baselines3 callback moving a :class:`huracan.progress.Bar` to the timesteps done
    (``num_timesteps``: environment steps over all environments), about 200 times a run."""

    def __init__(self, shown: progress.Bar) -> None:
        super().__init__()
        self.shown = shown
        self._last = 0

    def _on_step(self) -> bool:
        total = max(int(getattr(self.model, "_total_timesteps", 0) or 0), 1)
        if self.num_timesteps - self._last >= max(total // 200, 1):
            self._last = self.num_timesteps
            self.shown.update(self.num_timesteps)
        return True

    def _on_training_end(self) -> None:
        self.shown.update(self.num_timesteps)


def _learning_curve(vec: DummyVecEnv) -> pd.DataFrame:
    rows: list[tuple[float, float, int]] = []
    for env in vec.envs:
        assert isinstance(env, Monitor)
        times = env.get_episode_times()
        rows += list(zip(times, env.get_episode_rewards(), env.get_episode_lengths(),
                         strict=True))
    rows.sort()
    lengths = np.array([r[2] for r in rows], dtype=np.int64)
    return pd.DataFrame({"timesteps": np.cumsum(lengths),
                         "episode_reward": [r[1] for r in rows], "episode_bars": lengths})


def evaluate_ppo(sizer: SizerModel, data: SizingData | PortfolioData,
                 start: int | str | pd.Timestamp | None = None,
                 stop: int | str | pd.Timestamp | None = None,
                 name: str = "ppo") -> SizingResult:
    """Run the sizer deterministically over rows ``[start, stop)`` of ``data`` (held-out bars).

    A fresh environment is built on those rows only (``sizer.eval_config()``); the episode starts
    flat at the first row and runs to the last unless liquidated (then flat to the end).

    Returns:
        a :class:`~huracan.sizing.baselines.SizingResult` whose ``returns`` hold the per-bar
        ``strategy_return``, ``position``, ``size`` and ``leverage`` series, with metrics.

    Raises:
        ValueError: an empty window; a first evaluation bar at or before ``sizer.train_end``
            (the bars overlap training); an observation layout different from training's.
    """
    lo = 0 if start is None else data.row_of(start)
    hi = len(data) if stop is None else data.row_of(stop)
    if hi <= lo:
        raise ValueError(f"evaluation window [{lo}, {hi}) is empty")
    seg = data.slice(lo, hi)
    first = seg.timestamps[0]
    if first <= sizer.train_end:
        raise ValueError(f"evaluation starts at {first}, not after the last training bar "
                         f"{sizer.train_end}: those bars were trained on")
    cfg = sizer.eval_config()
    env = UnitActions(_base_env(seg, cfg))
    names = env.unwrapped.observation_names  # type: ignore[attr-defined]
    if tuple(names) != sizer.observation_names:
        raise ValueError(f"observation layout {names} differs from training's "
                         f"{sizer.observation_names} (same optional inputs needed)")
    if isinstance(seg, PortfolioData):
        return portfolio_result(name, run_portfolio_episode(env, sizer.act), seg, cfg)
    frame = run_episode(env, sizer.act, start=0, pad=True)
    return result_from_frame(name, frame, seg, cfg)


def save_sizer(sizer: SizerModel, path: str | Path) -> Path:
    """Save as an SB3 zip (``.zip`` appended if missing) with ``huracan_sizer.json`` inside.

    Returns:
        the path written.
    """
    p = Path(path)
    if p.suffix != ".zip":
        p = p.with_name(p.name + ".zip")
    sizer.policy.save(p)
    with zipfile.ZipFile(p, "a") as zf:
        zf.writestr(META_NAME, json.dumps(sizer.meta(), indent=1, default=str))
    return p


def load_sizer(path: str | Path) -> SizerModel:
    """Load a zip written by :func:`save_sizer` (CPU).

    Raises:
        ValueError: the zip has no ``huracan_sizer.json`` (a plain SB3 model).
    """
    p = Path(path)
    with zipfile.ZipFile(p) as zf:
        if META_NAME not in zf.namelist():
            raise ValueError(f"{p} has no {META_NAME}: not saved by save_sizer")
        meta = json.loads(zf.read(META_NAME))
    torch.set_num_threads(1)
    policy = PPO.load(p, device="cpu")
    env_keys = {f.name for f in fields(EnvConfig)}
    return SizerModel(
        policy=policy,
        env_config=EnvConfig.from_dict({k: v for k, v in meta["env_config"].items()
                                        if k in env_keys}),
        ppo_config=PPOConfig.from_dict(meta["ppo_config"]),
        observation_names=tuple(meta["observation_names"]),
        train_start=pd.Timestamp(meta["train_start"]), train_end=pd.Timestamp(meta["train_end"]),
        train_bars=int(meta["train_bars"]), fit_seconds=float(meta["fit_seconds"]),
        learning_curve=pd.DataFrame(meta["learning_curve"]))
