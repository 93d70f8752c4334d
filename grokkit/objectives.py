"""Losses and the accuracy that goes with each (None for regression)."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def logistic_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean softplus(−y·f) for binary labels y ∈ {−1, +1} and a scalar output f."""
    return F.softplus(-y * out).mean()


def binary_accuracy(out: Tensor, y: Tensor) -> Tensor:
    """Fraction with y·f > 0; a tie (y·f = 0, e.g. every sample at a zero-output init) counts ½."""
    margin = y * out
    return ((margin > 0).float() + 0.5 * (margin == 0).float()).mean()


def multiclass_accuracy(out: Tensor, y: Tensor) -> Tensor:
    """Micro-averaged accuracy of the arg-max logit (what grokking papers report)."""
    return (out.argmax(dim=-1) == y).float().mean()


def mse_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error, no ½ (the paper's matrix-completion loss)."""
    return (out - y).pow(2).mean()


@dataclass(frozen=True)
class Objective:
    loss: Callable[[Tensor, Tensor], Tensor]
    accuracy: Callable[[Tensor, Tensor], Tensor] | None


OBJECTIVES: dict[str, Objective] = {
    "logistic": Objective(logistic_loss, binary_accuracy),
    "cross_entropy": Objective(F.cross_entropy, multiclass_accuracy),
    "mse": Objective(mse_loss, None),
}
