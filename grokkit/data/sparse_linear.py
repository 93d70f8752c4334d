"""E1: sparse linear classification on the hypercube (paper Fig. 1a)."""

import torch

from grokkit.data.full_batch import Batch, FullBatchDataModule
from grokkit.errors import require


def sparse_linear_split(
    w_star: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """x uniform on {±1}^d, y = sign⟨w*, x⟩ (no ties when the support size k is odd)."""
    # int8 draws keep the peak memory of a 10^4 x 10^5 test set at 5 bytes per entry
    x = torch.randint(0, 2, (n, w_star.numel()), generator=generator, dtype=torch.int8)
    x = x.float().mul_(2).sub_(1)
    y = torch.sign(x @ w_star)
    return x, y


class SparseLinearData(FullBatchDataModule):
    """Labels y ∈ {−1, +1} from a k-sparse ground truth w* whose support entries are uniform ±1.

    Args:
        d: input dimension.
        k: support size of w* (its first k coordinates); must be odd so no label is a tie.
        n_train: training-set size.
        n_test: test-set size.
        seed: data seed (w*, training and test sets), separate from the model seed.
    """

    def __init__(
        self, d: int = 10_000, k: int = 3, n_train: int = 256, n_test: int = 2_000, seed: int = 0
    ) -> None:
        super().__init__(seed)
        require(d >= 1, f"data.d must be >= 1, got {d}")
        require(1 <= k <= d, f"data.k must be between 1 and data.d={d}, got {k}")
        require(k % 2 == 1, f"data.k must be odd so that no label is a tie, got {k}")
        require(n_train >= 1, f"data.n_train must be >= 1, got {n_train}")
        require(n_test >= 1, f"data.n_test must be >= 1, got {n_test}")
        self.d, self.k, self.n_train, self.n_test = d, k, n_train, n_test

    def build(self) -> Batch:
        gen = self.generator()
        w_star = torch.zeros(self.d)
        w_star[: self.k] = torch.randint(0, 2, (self.k,), generator=gen).float() * 2 - 1
        self.w_star = w_star
        return {
            "train": sparse_linear_split(w_star, self.n_train, gen),
            "test": sparse_linear_split(w_star, self.n_test, gen),
        }
