"""E5: the symmetric factorization W = U·Uᵀ − V·Vᵀ (2-homogeneous in θ = (U, V))."""

import torch
import torch.nn.functional as F
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

    def trace_ntk(self, x: torch.Tensor) -> torch.Tensor:
        """The NTK on the index pairs ``x`` in closed form (float64): ∂W_ij/∂U = e_i u_jᵀ +
        e_j u_iᵀ and ∂W_ij/∂V = −(e_i v_jᵀ + e_j v_iᵀ), so K((i, j), (k, l)) = δ_ik G_jl +
        δ_il G_jk + δ_jk G_il + δ_jl G_ik with G = UUᵀ + VVᵀ: d³ + n² work instead of n
        Jacobians of 2d² entries (~50 ms a row for E5's 128 probe points)."""
        u, v = self.u.detach().double(), self.v.detach().double()
        g = u @ u.T + v @ v.T
        i, j = x[:, 0], x[:, 1]

        def same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a[:, None] == b[None, :]).double()

        return (
            same(i, i) * g[j][:, j]
            + same(i, j) * g[j][:, i]
            + same(j, i) * g[i][:, j]
            + same(j, j) * g[i][:, i]
        )

    def check_input(self, x: torch.Tensor) -> None:
        d = self.u.shape[0]
        require(
            x.dim() == 2 and x.shape[1] == 2 and int(x.max()) < d,
            f"model.net.d={d} does not fit the data's (i, j) index pairs (max index "
            f"{int(x.max())})",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.embedding, not self.u[i]: indexing's CPU backward adds rows with atomics from several
        # threads, in an order (and so a rounding) that changes from run to run
        i, j = x[:, 0], x[:, 1]
        if not torch.is_grad_enabled() and len(x) > self.u.shape[0]:
            # evaluation: read the entries off W (2d³ multiply-adds) rather than gather 4 rows
            # of d per entry (E5's 8 939 test entries: ~35x faster); equal up to rounding
            return self.matrix()[i, j]
        u_i, u_j = F.embedding(i, self.u), F.embedding(j, self.u)
        v_i, v_j = F.embedding(i, self.v), F.embedding(j, self.v)
        return (u_i * u_j).sum(-1) - (v_i * v_j).sum(-1)
