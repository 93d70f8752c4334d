"""E5: the symmetric factorization W = U·Uᵀ − V·Vᵀ (2-homogeneous in θ = (U, V))."""

import torch
from torch import nn

from grokkit.errors import require
from grokkit.models.base import HomogeneousNet


class MatrixFactorization(HomogeneousNet):
    """Predicts W_ij for index pairs (i, j), W = U·Uᵀ − V·Vᵀ with U, V ∈ R^{d×d}.

    Base initialization U = V = I (+ σ·N(0, 1) noise, Theorem 3.12's symmetry breaking, drawn
    from the global seed), so W = 0 at init and the task's α gives U = V = α·I.

    Args:
        d: matrix size.
        init_noise: σ, standard deviation of the Gaussian noise added to U and V (before α).
    """

    degree = 2

    def __init__(self, d: int, init_noise: float = 0.0) -> None:
        super().__init__()
        require(d >= 1, f"model.net.d must be >= 1, got {d}")
        require(init_noise >= 0, f"model.net.init_noise must be >= 0, got {init_noise}")
        self.u = nn.Parameter(torch.eye(d) + init_noise * torch.randn(d, d))
        self.v = nn.Parameter(torch.eye(d) + init_noise * torch.randn(d, d))
        self.zero_output_at_init = init_noise == 0  # U = V

    def matrix(self) -> torch.Tensor:
        return self.u @ self.u.T - self.v @ self.v.T

    def check_input(self, x: torch.Tensor) -> None:
        d = self.u.shape[0]
        require(
            x.dim() == 2 and x.shape[1] == 2 and int(x.max()) < d,
            f"model.net.d={d} does not fit the data's (i, j) index pairs (max index "
            f"{int(x.max())})",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, j = x[:, 0], x[:, 1]
        return (self.u[i] * self.u[j]).sum(-1) - (self.v[i] * self.v[j]).sum(-1)
