"""Transformer encoder over the lookback window.

Follows the encoder of Vaswani et al. (2017), "Attention Is All You Need", as adapted to
multivariate time series by Zerveas et al. (2021): a linear projection of each bar's features to
``d_model``, a learned positional embedding (as in BERT, Devlin et al., 2019), ``num_layers``
post-norm encoder blocks (multi-head self-attention -> dropout -> residual -> LayerNormalization,
then a position-wise feed-forward network -> dropout -> residual -> LayerNormalization), global
average pooling over time concatenated with the last bar's token, then the shared Dense head -> one
output.

No causal mask is needed inside a window: the window ends at the predicted row, so every bar the
attention sees is at or before it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras

from huracan.models.keras.trainer import KerasForecaster, _check_int


@keras.saving.register_keras_serializable(package="huracan")
class PositionalEmbedding(keras.layers.Layer):
    """Add a learned vector per time step: ``(batch, steps, d) -> (batch, steps, d)``.

    The table has shape ``(sequence_length, d)``, initialised from N(0, 0.02^2) as in BERT; inputs
    must have exactly ``sequence_length`` steps. Registered as ``huracan>PositionalEmbedding`` so
    ``.keras`` files reload.

    Args:
        sequence_length: number of time steps (the model's lookback, in bars).
    """

    def __init__(self, sequence_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if input_shape[-2] is not None and input_shape[-2] != self.sequence_length:
            raise ValueError(
                f"PositionalEmbedding expects {self.sequence_length} steps, got {input_shape[-2]}"
            )
        self.embeddings = self.add_weight(
            shape=(self.sequence_length, int(input_shape[-1] or 0)),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="embeddings",
        )

    def call(self, inputs: Any) -> Any:
        return inputs + keras.ops.cast(self.embeddings, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config["sequence_length"] = self.sequence_length
        return config


class TransformerForecaster(KerasForecaster):
    """Transformer-encoder forecaster of the forward return (fraction) from ``lookback`` bars.

    Args:
        d_model: width of the token (bar) representation; must be divisible by ``num_heads``.
        num_heads: attention heads; each has ``d_model // num_heads`` key dimensions.
        ff_dim: hidden width of the position-wise feed-forward network.
        num_layers: number of encoder blocks (>= 1).
        lookback, epochs, batch_size, learning_rate, patience, dropout, head_units, loss, seed,
            verbose: shared training hyperparameters, see :class:`KerasForecaster`.

    Input windows have shape ``(batch, lookback, n_features)``; the network outputs ``(batch, 1)``
    standardised returns, which :meth:`predict` turns into fractions, shape ``(n,)``.

    Raises:
        ValueError: from ``fit`` on an invalid hyperparameter (including ``d_model`` not divisible
            by ``num_heads``).
    """

    model_type: ClassVar[str] = "transformer"

    def __init__(
        self,
        *,
        d_model: int = 32,
        num_heads: int = 4,
        ff_dim: int = 64,
        num_layers: int = 2,
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
        self.d_model = d_model
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.num_layers = num_layers

    def _check_params(self) -> None:
        super()._check_params()
        _check_int(self.d_model, "d_model", 1)
        _check_int(self.num_heads, "num_heads", 1)
        _check_int(self.ff_dim, "ff_dim", 1)
        _check_int(self.num_layers, "num_layers", 1)
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )

    def _build(self, lookback: int, n_features: int) -> keras.Model:
        layers = keras.layers
        d_model, rate = int(self.d_model), self.dropout
        inputs = keras.Input(shape=(lookback, n_features), name="window")
        x = layers.Dense(d_model, name="input_projection")(inputs)
        x = PositionalEmbedding(lookback, name="positional_embedding")(x)
        x = layers.Dropout(rate, name="embedding_dropout")(x)
        for i in range(int(self.num_layers)):
            attn = layers.MultiHeadAttention(
                num_heads=int(self.num_heads),
                key_dim=d_model // int(self.num_heads),
                dropout=rate,
                name=f"self_attention_{i}",
            )(x, x)
            attn = layers.Dropout(rate, name=f"attention_dropout_{i}")(attn)
            x = layers.LayerNormalization(epsilon=1e-6, name=f"attention_norm_{i}")(
                layers.Add(name=f"attention_residual_{i}")([x, attn])
            )
            ff = layers.Dense(int(self.ff_dim), activation="gelu", name=f"ff_hidden_{i}")(x)
            ff = layers.Dense(d_model, name=f"ff_output_{i}")(ff)
            ff = layers.Dropout(rate, name=f"ff_dropout_{i}")(ff)
            x = layers.LayerNormalization(epsilon=1e-6, name=f"ff_norm_{i}")(
                layers.Add(name=f"ff_residual_{i}")([x, ff])
            )
        pooled = layers.GlobalAveragePooling1D(name="pool")(x)
        summary = layers.Concatenate(name="summary")([pooled, self._last_step(x)])
        return keras.Model(inputs, self._head(summary), name="transformer_forecaster")
