"""Position sizing: how much of the forecaster's direction to take, and with which leverage.

- :mod:`huracan.sizing.env`: the gymnasium environment over a stitched walk-forward OOS
  prediction series and its bars (observation, action, costs, liquidation, reward), plus the
  vectorised cost and liquidation arithmetic shared with the baselines.
- :mod:`huracan.sizing.baselines`: simple sizing rules on the same bars and costs (fixed fraction,
  the forecaster's sign rule, volatility targeting, fractional Kelly) and their metrics.
- :mod:`huracan.sizing.ppo`: a stable-baselines3 PPO agent (Schulman et al. 2017) trained on the
  environment, saved as an SB3 zip, evaluated deterministically on bars it never trained on.
"""
