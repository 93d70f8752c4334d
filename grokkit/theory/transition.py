"""The theory's switch time between the kernel and the rich regime (arXiv 2311.18817, §3)."""

import math


def transition_time(alpha: float, weight_decay: float) -> float | None:
    """ln(α)/λ in gradient-flow time: the leading-order time of the switch from the kernel to
    the rich regime for gradient flow with coupled weight decay λ from θ0 = α·θ̄. None where
    the formula says nothing: λ = 0 (no switch) or α ≤ 1 (no large initialization)."""
    if weight_decay > 0 and alpha > 1:
        return math.log(alpha) / weight_decay
    return None


def predicted_transition_time(
    alpha: float,
    weight_decay: float,
    *,
    degree: int | None,
    zero_output_at_init: bool,
    gradient_descent: bool,
) -> float | None:
    """The run's predicted switch time, ln(α)/λ, where the theory speaks: a homogeneous net
    (``degree`` not None) whose base initialization θ̄ has zero output, trained by gradient
    descent or flow on L with coupled weight decay (``gradient_descent``: not AdamW, not
    loss-normalized steps). α is relative to each model's own θ̄ (‖θ̄‖ = 1 for the diagonal
    net, ≈ 45 for the two-layer ReLU net at width 1024), and the time is leading order: the
    switch comes at ln(α)/λ + O(1/λ). None elsewhere."""
    if degree is None or not zero_output_at_init or not gradient_descent:
        return None
    return transition_time(alpha, weight_decay)
