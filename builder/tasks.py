"""Task types: the output activation, loss and metrics each one implies, and scoring in NumPy.

Scores are computed here from predicted outputs, never from Keras metric objects, so a model is
scored the same way in training, on the test set and on outputs read back from the browser.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TaskHead:
    """What a task type implies for the model's output layer and how it is scored."""

    task: str
    units: int
    activation: str
    loss: str
    metrics: tuple[str, ...]
    primary_metric: str
    higher_is_better: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def head_for(task: str, classes: int, targets: int) -> TaskHead:
    """Return the head for a task; ``classes`` counts classes or labels, ``targets`` regression outputs."""
    if task == "binary":
        return TaskHead(task, 1, "sigmoid", "binary_crossentropy", ("accuracy", "log_loss", "auc"), "accuracy", True)
    if task == "multiclass":
        return TaskHead(task, classes, "softmax", "categorical_crossentropy", ("accuracy", "log_loss"), "accuracy", True)
    if task == "multilabel":
        return TaskHead(task, classes, "sigmoid", "binary_crossentropy",
                        ("accuracy", "exact_match", "log_loss"), "accuracy", True)
    if task == "regression":
        return TaskHead(task, targets, "linear", "mse", ("mae", "mse"), "mae", False)
    raise ValueError(f"unknown task type {task!r}")


def training_targets(task: str, y: np.ndarray, classes: int) -> np.ndarray:
    """Return targets in the form the loss expects (one-hot for categorical cross-entropy)."""
    if task == "multiclass":
        return np.eye(classes, dtype=np.float32)[y]
    if task == "binary":
        return y.astype(np.float32).reshape(-1, 1)
    return y.astype(np.float32)


def predicted_labels(task: str, outputs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Turn model outputs into class indices (binary, multiclass) or 0/1 label matrices."""
    if task == "multiclass":
        return outputs.argmax(axis=1)
    if task == "binary":
        return (outputs.reshape(-1) >= threshold).astype(np.int64)
    if task == "multilabel":
        return (outputs >= threshold).astype(np.int64)
    raise ValueError(f"task {task!r} has no labels")


def score(task: str, y: np.ndarray, outputs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Score model outputs against true targets with every metric of the task's head."""
    outputs = np.asarray(outputs, dtype=np.float64)
    eps = 1e-7
    if task == "regression":
        diff = outputs.reshape(len(y), -1) - np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return {"mae": float(np.abs(diff).mean()), "mse": float((diff**2).mean())}
    if task == "multiclass":
        probs = np.clip(outputs, eps, 1.0)
        return {
            "accuracy": float((outputs.argmax(axis=1) == y).mean()),
            "log_loss": float(-np.log(probs[np.arange(len(y)), y]).mean()),
        }
    if task == "binary":
        p = np.clip(outputs.reshape(-1), eps, 1 - eps)
        return {
            "accuracy": float(((p >= threshold).astype(int) == y).mean()),
            "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
            "auc": _auc(y, p),
        }
    if task == "multilabel":
        p = np.clip(outputs, eps, 1 - eps)
        labels = (p >= threshold).astype(int)
        return {
            "accuracy": float((labels == y).mean()),
            "exact_match": float((labels == y).all(axis=1).mean()),
            "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
        }
    raise ValueError(f"unknown task type {task!r}")


def row_credit(task: str, y: np.ndarray, outputs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Return one value per row whose mean is the task's primary metric.

    Accuracy gives 1 for a correct row and 0 otherwise (multi-label: the share of correct labels);
    regression gives the row's absolute error averaged over targets. Paired per-row values let the
    baseline check measure how much of a difference is noise.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        diff = outputs.reshape(len(y), -1) - np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return np.abs(diff).mean(axis=1)
    if task == "multiclass":
        return (outputs.argmax(axis=1) == y).astype(np.float64)
    if task == "binary":
        return ((outputs.reshape(-1) >= threshold).astype(int) == y).astype(np.float64)
    if task == "multilabel":
        return ((outputs >= threshold).astype(int) == y).mean(axis=1)
    raise ValueError(f"unknown task type {task!r}")


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    start = 0
    while start < len(p):
        end = start
        while end + 1 < len(p) and sorted_p[end + 1] == sorted_p[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def is_better(head: TaskHead, candidate: float, reference: float) -> bool:
    """Return whether ``candidate`` beats ``reference`` on the head's primary metric."""
    return candidate > reference if head.higher_is_better else candidate < reference


def confusion_matrix(y: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    """Count rows by true class (rows of the matrix) and predicted class (columns)."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    return matrix.tolist()
