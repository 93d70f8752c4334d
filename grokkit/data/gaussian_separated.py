"""E2: L2-separated Gaussian data, where the kernel regime generalizes and the rich regime does
not (misgrokking, paper Fig. 1b)."""

import torch

from grokkit.data.full_batch import Batch, FullBatchDataModule
from grokkit.errors import require


class GaussianSeparatedData(FullBatchDataModule):
    """w* uniform on the unit sphere; z ~ N(0, I_d); y = sign⟨z, w*⟩; x = z + y·(γ/2)·w*.

    Every point then has L2 margin at least γ/2 along w*, while its L1 geometry is that of
    Gaussian noise.

    Args:
        d: input dimension.
        gamma: separation γ.
        n_train: training-set size.
        n_test: test-set size.
        seed: data seed, separate from the model seed.
    """

    def __init__(
        self,
        d: int = 100_000,
        gamma: float = 25.0,
        n_train: int = 32,
        n_test: int = 10_000,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        require(d >= 1, f"data.d must be >= 1, got {d}")
        require(gamma >= 0, f"data.gamma must be >= 0, got {gamma}")
        require(n_train >= 1, f"data.n_train must be >= 1, got {n_train}")
        require(n_test >= 1, f"data.n_test must be >= 1, got {n_test}")
        self.d, self.gamma, self.n_train, self.n_test = d, gamma, n_train, n_test

    def _split(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, self.d, generator=gen)
        y = torch.sign(z @ self.w_star)
        y[y == 0] = 1.0  # probability zero, but a tie must not produce an unlabeled point
        return z.add_(torch.outer(y, self.w_star), alpha=self.gamma / 2), y

    def build(self) -> Batch:
        gen = self.generator()
        w = torch.randn(self.d, generator=gen)
        self.w_star = w / w.norm()
        return {"train": self._split(self.n_train, gen), "test": self._split(self.n_test, gen)}
