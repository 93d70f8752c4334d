"""Diagonal linear net, the model of the paper's sparse-linear experiments (E1, E2)."""

import math

import torch
from torch import nn

from grokkit.errors import require
from grokkit.models.base import HomogeneousNet


class DiagonalNet(HomogeneousNet):
    """f(x) = ⟨u^L − v^L, x⟩ with θ = (u, v) ∈ R^{2d}: L-homogeneous in θ.

    Base initialization u = v = 1/√(2d)·1, so ‖θ̄‖ = 1 and f(θ̄; ·) = 0; after the task scales it by
    α the initial parameter norm is exactly α (the reference scripts' "alpha").

    Args:
        d: input dimension.
        depth: L, the power applied to each coordinate (2 in the paper).
    """

    def __init__(self, d: int, depth: int = 2) -> None:
        super().__init__()
        require(d >= 1, f"model.net.d must be >= 1, got {d}")
        require(depth >= 1, f"model.net.depth must be >= 1, got {depth}")
        self.degree = depth
        self.zero_output_at_init = True  # u = v
        base = torch.full((d,), 1.0 / math.sqrt(2 * d))
        self.u = nn.Parameter(base.clone())
        self.v = nn.Parameter(base.clone())

    def check_input(self, x: torch.Tensor) -> None:
        d = self.u.numel()
        require(
            x.shape[-1] == d,
            f"model.net.d={d} does not match the data's input dimension {x.shape[-1]}",
        )

    def effective_weight(self) -> torch.Tensor:
        """w(θ) = u^L − v^L, the linear predictor the net computes."""
        return self.u.pow(self.degree) - self.v.pow(self.degree)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.effective_weight()
