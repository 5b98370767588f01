"""Keras 3 model construction from a hyperparameter set.

Normalization is the model's first layer, with statistics fitted on training rows only, so the
exported model takes raw (encoded) inputs and the browser needs no scaling code of its own.
Regression models end in the inverse operation: the last Dense layer predicts standardized
targets and a ``Rescaling`` layer turns them back into the target's units. The output then starts
near the training mean instead of near 0, and the loss does not depend on the target's scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .tasks import TaskHead

TABULAR_INPUT = "features"
IMAGE_INPUT = "image"


@dataclass(frozen=True)
class Hyperparameters:
    """One model configuration: capacity, regularization and optimizer settings."""

    architecture: str = "mlp"
    units: tuple[int, ...] = (64,)
    filters: tuple[int, ...] = (16, 32)
    dropout: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    learning_rate: float = 0.001
    batch_size: int = 32

    def with_(self, **changes: Any) -> Hyperparameters:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["units"] = list(self.units)
        data["filters"] = list(self.filters)
        return data

    def describe(self) -> str:
        parts = [self.architecture]
        if self.architecture == "cnn":
            parts.append("filters " + "-".join(map(str, self.filters)))
        parts.append("units " + "-".join(map(str, self.units)))
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        if self.l1:
            parts.append(f"l1 {self.l1:g}")
        if self.l2:
            parts.append(f"l2 {self.l2:g}")
        parts.append(f"lr {self.learning_rate:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Normalization:
    """Per-feature (tabular) or per-channel (image) mean and variance fitted on training data."""

    mean: np.ndarray
    variance: np.ndarray

    @classmethod
    def fit_images(cls, images: np.ndarray) -> Normalization:
        """Fit per-channel statistics on images of shape (rows, height, width, channels)."""
        axes = tuple(range(images.ndim - 1))
        return cls(images.mean(axis=axes).astype(np.float32), np.maximum(images.var(axis=axes), 1e-12).astype(np.float32))


@dataclass(frozen=True)
class TargetScaling:
    """Per-target mean and standard deviation of regression targets, fitted on training rows."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> TargetScaling:
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        std = y.std(axis=0)
        return cls(y.mean(axis=0).astype(np.float32), np.where(std > 1e-12, std, 1.0).astype(np.float32))


def standardized_mse(std: np.ndarray) -> Any:
    """Return a mean squared error loss measured in standard deviations of each target."""
    from keras import ops

    inverse = (1.0 / np.asarray(std, dtype=np.float32)).reshape(1, -1)

    def loss(y_true: Any, y_pred: Any) -> Any:
        return ops.mean(ops.square((y_true - y_pred) * inverse), axis=-1)

    return loss


def build_model(input_shape: tuple[int, ...], input_kind: str, head: TaskHead, hp: Hyperparameters,
                normalization: Normalization, target_scaling: TargetScaling | None = None) -> Any:
    """Build and compile a Keras model for the given input, task head and hyperparameters.

    ``target_scaling`` (regression only) appends the ``Rescaling`` layer that maps standardized
    predictions back to target units and makes the loss ``standardized_mse``.
    """
    import keras

    regularizer = keras.regularizers.L1L2(l1=hp.l1, l2=hp.l2) if (hp.l1 or hp.l2) else None
    name = IMAGE_INPUT if input_kind == "image" else TABULAR_INPUT
    inputs = keras.Input(shape=input_shape, name=name)
    x = keras.layers.Normalization(axis=-1, mean=normalization.mean, variance=normalization.variance,
                                   name="normalize")(inputs)
    if input_kind == "image" and hp.architecture == "cnn":
        for i, filters in enumerate(hp.filters):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_regularizer=regularizer,
                                    name=f"conv{i + 1}")(x)
            if min(x.shape[1], x.shape[2]) >= 2:
                x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(hp.units):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer, name=f"dense{i + 1}")(x)
        if hp.dropout:
            x = keras.layers.Dropout(hp.dropout, name=f"dropout{i + 1}")(x)
    loss: Any = head.loss
    if target_scaling is not None:
        x = keras.layers.Dense(head.units, activation=head.activation, name="standardized_output")(x)
        outputs = keras.layers.Rescaling(scale=target_scaling.std, offset=target_scaling.mean, name="output")(x)
        loss = standardized_mse(target_scaling.std)
    else:
        outputs = keras.layers.Dense(head.units, activation=head.activation, name="output")(x)
    model = keras.Model(inputs, outputs, name="webml")
    metrics = {"binary": ["binary_accuracy"], "multiclass": ["categorical_accuracy"],
               "multilabel": ["binary_accuracy"], "regression": ["mae"]}[head.task]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=hp.learning_rate), loss=loss, metrics=metrics)
    return model


def count_parameters(model: Any) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
