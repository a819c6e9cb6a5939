"""Temporal convolutional network: stacked causal (optionally dilated) Conv1D residual blocks.

Follows the TCN of Bai, Kolter & Koltun (2018), "An Empirical Evaluation of Generic Convolutional
and Recurrent Networks for Sequence Modeling": causal convolutions (output at step ``t`` sees steps
``<= t`` only), dilation ``dilation_base ** i`` in block ``i`` (as in WaveNet, van den Oord et al.,
2016), spatial dropout and a residual connection (a 1x1 convolution when the widths differ). The
last block's sequence is summarised by global average pooling concatenated with its last step (the
predicted bar, whose receptive field is the most recent bars), then the shared Dense head -> one
output.

Receptive field of the stack: ``1 + (kernel_size - 1) * sum_i dilation_base ** i`` bars; with the
defaults (kernel 3, 3 layers, base 2) that is 15 bars; the average pooling covers the whole window.
"""

from __future__ import annotations

from typing import ClassVar

import keras

from huracan.models.keras.trainer import KerasForecaster, _check_int


class CNNForecaster(KerasForecaster):
    """Causal dilated Conv1D forecaster of the forward return (fraction) from ``lookback`` bars.

    Args:
        filters: channels of every convolution.
        kernel_size: taps of every convolution, in bars (>= 1).
        num_layers: number of residual causal-convolution blocks (>= 1).
        dilation_base: block ``i`` uses dilation ``dilation_base ** i`` (>= 1; 1 = no dilation).
        lookback, epochs, batch_size, learning_rate, patience, dropout, head_units, loss, seed,
            verbose: shared training hyperparameters, see :class:`KerasForecaster`.

    Input windows have shape ``(batch, lookback, n_features)``; the network outputs ``(batch, 1)``
    standardised returns, which :meth:`predict` turns into fractions, shape ``(n,)``.

    Raises:
        ValueError: from ``fit`` on an invalid hyperparameter.
    """

    model_type: ClassVar[str] = "cnn"

    def __init__(
        self,
        *,
        filters: int = 32,
        kernel_size: int = 3,
        num_layers: int = 3,
        dilation_base: int = 2,
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
        self.filters = filters
        self.kernel_size = kernel_size
        self.num_layers = num_layers
        self.dilation_base = dilation_base

    def _check_params(self) -> None:
        super()._check_params()
        _check_int(self.filters, "filters", 1)
        _check_int(self.kernel_size, "kernel_size", 1)
        _check_int(self.num_layers, "num_layers", 1)
        _check_int(self.dilation_base, "dilation_base", 1)

    def _build(self, lookback: int, n_features: int) -> keras.Model:
        layers = keras.layers
        filters = int(self.filters)
        inputs = keras.Input(shape=(lookback, n_features), name="window")
        x = inputs
        for i in range(int(self.num_layers)):
            h = layers.Conv1D(
                filters,
                int(self.kernel_size),
                padding="causal",
                dilation_rate=int(self.dilation_base) ** i,
                activation="relu",
                name=f"causal_conv_{i}",
            )(x)
            h = layers.SpatialDropout1D(self.dropout, name=f"spatial_dropout_{i}")(h)
            skip = x if x.shape[-1] == filters else layers.Conv1D(filters, 1, name=f"skip_{i}")(x)
            x = layers.Add(name=f"residual_{i}")([skip, h])
        pooled = layers.GlobalAveragePooling1D(name="pool")(x)
        summary = layers.Concatenate(name="summary")([pooled, self._last_step(x)])
        return keras.Model(inputs, self._head(summary), name="cnn_forecaster")
