"""The theory's switch time between the kernel and the rich regime (arXiv 2311.18817, §3)."""

import math


def transition_time(alpha: float, weight_decay: float) -> float | None:
    """ln(α)/λ in gradient-flow time: the leading-order time of the switch from the kernel to
    the rich regime for gradient flow with coupled weight decay λ from θ0 = α·θ̄. None where
    the formula says nothing: λ = 0 (no switch) or α ≤ 1 (no large initialization)."""
    if weight_decay > 0 and alpha > 1:
        return math.log(alpha) / weight_decay
    return None
