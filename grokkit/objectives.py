"""Losses, the accuracy that goes with each (None for regression), and each loss's logarithm
computed stably in float64 (for the loss-normalized step size of paper Fig. 4)."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def logistic_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean softplus(−y·f) for binary labels y ∈ {−1, +1} and a scalar output f."""
    return F.softplus(-y * out).mean()


def binary_hits(out: Tensor, y: Tensor) -> Tensor:
    """Per sample: 1 where y·f > 0, ½ at a tie (y·f = 0, e.g. every sample at a zero-output
    init), 0 otherwise (float32)."""
    margin = y * out
    return (margin > 0).float() + 0.5 * (margin == 0).float()


def binary_accuracy(out: Tensor, y: Tensor) -> Tensor:
    """Fraction with y·f > 0; a tie counts ½ (the mean of ``binary_hits``)."""
    return binary_hits(out, y).mean()


def multiclass_hits(out: Tensor, y: Tensor) -> Tensor:
    """Per sample: 1 where the arg-max logit is the label, else 0 (float32)."""
    return (out.argmax(dim=-1) == y).float()


def multiclass_accuracy(out: Tensor, y: Tensor) -> Tensor:
    """Micro-averaged accuracy of the arg-max logit (what grokking papers report)."""
    return multiclass_hits(out, y).mean()


def mse_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error, no ½ (the paper's matrix-completion loss)."""
    return (out - y).pow(2).mean()


def mse_onehot_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error against one-hot targets, averaged over samples and classes (Omnigrok)."""
    return (out - F.one_hot(y, out.shape[-1]).to(out.dtype)).pow(2).mean()


def _log_softplus(s: Tensor) -> Tensor:
    """log(log(1 + e^s)) without underflow: for s ≪ 0 it is s − e^s/2 + … ≈ s."""
    return torch.where(s < -30, s, torch.log(F.softplus(s.clamp(min=-30))))


def _log_mean_exp(log_terms: Tensor) -> Tensor:
    return torch.logsumexp(log_terms, dim=0) - math.log(log_terms.shape[0])


def log_logistic_loss(out: Tensor, y: Tensor) -> Tensor:
    """log of the mean logistic loss, in float64."""
    return _log_mean_exp(_log_softplus(-y.double() * out.double()))


def log_cross_entropy(out: Tensor, y: Tensor) -> Tensor:
    """log of the mean cross-entropy, in float64: ℓ_i = softplus(logsumexp_{j≠y}(f_j − f_y))."""
    out = out.double()
    correct = out.gather(1, y[:, None])
    others = (out - correct).scatter(1, y[:, None], float("-inf"))
    return _log_mean_exp(_log_softplus(torch.logsumexp(others, dim=1)))


def log_mse(out: Tensor, y: Tensor) -> Tensor:
    return torch.log(mse_loss(out.double(), y.double()))


def log_mse_onehot(out: Tensor, y: Tensor) -> Tensor:
    return torch.log(mse_onehot_loss(out.double(), y))


@dataclass(frozen=True)
class Objective:
    """``loss`` and ``log_loss`` are means over the samples (and, for ``mse_onehot``, the
    classes); ``accuracy`` is the mean of ``hits``, the per-sample scores."""

    loss: Callable[[Tensor, Tensor], Tensor]
    accuracy: Callable[[Tensor, Tensor], Tensor] | None
    log_loss: Callable[[Tensor, Tensor], Tensor]
    hits: Callable[[Tensor, Tensor], Tensor] | None = None


OBJECTIVES: dict[str, Objective] = {
    "logistic": Objective(logistic_loss, binary_accuracy, log_logistic_loss, binary_hits),
    "cross_entropy": Objective(
        F.cross_entropy, multiclass_accuracy, log_cross_entropy, multiclass_hits
    ),
    "mse": Objective(mse_loss, None, log_mse),
    "mse_onehot": Objective(mse_onehot_loss, multiclass_accuracy, log_mse_onehot, multiclass_hits),
}
