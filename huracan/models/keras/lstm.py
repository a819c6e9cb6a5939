"""Bidirectional stacked LSTM with attention pooling over time.

Architecture: ``num_layers`` x [Bidirectional LSTM (Hochreiter & Schmidhuber, 1997; Schuster &
Paliwal, 1997) -> LayerNormalization (Ba et al., 2016) -> Dropout], then additive attention pooling
over the time steps (Bahdanau et al., 2015; in its single-query "feed-forward attention" form of
Raffel & Ellis, 2016): ``score_t = v . tanh(W h_t)``, ``a = softmax_t(score)``, ``c = sum_t a_t
h_t``, concatenated with the last bar's hidden state ``h_T`` (the forward direction's summary of
the window), then the shared Dense head -> one output.

The backward LSTM direction reads the window from its last bar to its first; the window itself ends
at the predicted row, so the model stays causal (no bar after row ``i`` enters prediction ``i``).
"""

from __future__ import annotations

from typing import ClassVar

import keras

from huracan.models.keras.trainer import KerasForecaster, _check_int


class LSTMForecaster(KerasForecaster):
    """Bidirectional LSTM forecaster of the forward return (fraction) from ``lookback`` bars.

    Args:
        units: LSTM units per direction (the layer outputs ``2 * units`` features per bar).
        num_layers: number of stacked bidirectional LSTM layers (>= 1; 2-3 is the intended range).
        attention_units: width of the attention scoring layer ``W``.
        lookback, epochs, batch_size, learning_rate, patience, dropout, head_units, loss, seed,
            verbose: shared training hyperparameters, see :class:`KerasForecaster`.

    Input windows have shape ``(batch, lookback, n_features)``; the network outputs ``(batch, 1)``
    standardised returns, which :meth:`predict` turns into fractions, shape ``(n,)``.

    Raises:
        ValueError: from ``fit`` on an invalid hyperparameter.
    """

    model_type: ClassVar[str] = "lstm"

    def __init__(
        self,
        *,
        units: int = 16,
        num_layers: int = 2,
        attention_units: int = 16,
        lookback: int = 32,
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        patience: int = 3,
        dropout: float = 0.1,
        head_units: int = 16,
        loss: str = "huber",
        seed: int = 42,
        verbose: int = 2,
    ) -> None:
        super().__init__(
            lookback=lookback,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            dropout=dropout,
            head_units=head_units,
            loss=loss,
            seed=seed,
            verbose=verbose,
        )
        self.units = units
        self.num_layers = num_layers
        self.attention_units = attention_units

    def _check_params(self) -> None:
        super()._check_params()
        _check_int(self.units, "units", 1)
        _check_int(self.num_layers, "num_layers", 1)
        _check_int(self.attention_units, "attention_units", 1)

    def _build(self, lookback: int, n_features: int) -> keras.Model:
        layers = keras.layers
        inputs = keras.Input(shape=(lookback, n_features), name="window")
        x = inputs
        for i in range(int(self.num_layers)):
            x = layers.Bidirectional(
                layers.LSTM(int(self.units), return_sequences=True), name=f"bilstm_{i}"
            )(x)
            x = layers.LayerNormalization(name=f"layer_norm_{i}")(x)
            x = layers.Dropout(self.dropout, name=f"dropout_{i}")(x)
        # additive attention pooling: (batch, lookback, 2u) -> weights (batch, lookback, 1)
        scores = layers.Dense(int(self.attention_units), activation="tanh", name="attn_hidden")(x)
        scores = layers.Dense(1, use_bias=False, name="attn_score")(scores)
        weights = layers.Softmax(axis=1, name="attn_weights")(scores)
        context = layers.Dot(axes=1, name="attn_pool")([weights, x])  # (batch, 1, 2u)
        context = layers.Flatten(name="attn_context")(context)
        summary = layers.Concatenate(name="summary")([context, self._last_step(x)])
        return keras.Model(inputs, self._head(summary), name="lstm_forecaster")
