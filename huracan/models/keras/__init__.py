"""Keras 3 sequence models of the zoo: one architecture per file, the shared steps in ``trainer``.

- :class:`LSTMForecaster` (``lstm``): bidirectional stacked LSTM with attention pooling.
- :class:`CNNForecaster` (``cnn``): causal dilated Conv1D residual blocks (TCN).
- :class:`TransformerForecaster` (``transformer``): Transformer encoder with a learned positional
  embedding.

All map windows of ``lookback`` bars, shape ``(n, lookback, n_features)`` built internally from
``(n, n_features)`` matrices, to the forward return as a fraction, shape ``(n,)``.
"""

from huracan.models.keras.cnn import CNNForecaster
from huracan.models.keras.lstm import LSTMForecaster
from huracan.models.keras.trainer import KerasForecaster, SequenceShap
from huracan.models.keras.transformer import PositionalEmbedding, TransformerForecaster

__all__ = [
    "CNNForecaster",
    "KerasForecaster",
    "LSTMForecaster",
    "PositionalEmbedding",
    "SequenceShap",
    "TransformerForecaster",
]
