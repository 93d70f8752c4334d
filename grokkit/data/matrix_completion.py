"""E5: completing the rank-1 multiplication table X*_ij = i·j/d² from a few observed entries."""

import torch

from grokkit.data.full_batch import Batch, FullBatchDataModule
from grokkit.errors import require


def multiplication_table(d: int) -> torch.Tensor:
    i = torch.arange(d, dtype=torch.float32)
    return torch.outer(i, i) / d**2


class MatrixCompletionData(FullBatchDataModule):
    """Observed entries (a random ``observed_fraction`` of the d² entries) are the training set,
    every other entry the test set. Inputs are (i, j) index pairs, targets X*_ij.

    Args:
        d: matrix size.
        observed_fraction: fraction of entries observed, in (0, 1).
        seed: data seed (which entries are observed), separate from the model seed.
    """

    def __init__(self, d: int = 97, observed_fraction: float = 0.05, seed: int = 0) -> None:
        super().__init__(seed)
        require(d >= 2, f"data.d must be >= 2, got {d}")
        require(
            0 < observed_fraction < 1,
            f"data.observed_fraction must be in (0, 1), got {observed_fraction}",
        )
        self.d, self.observed_fraction = d, observed_fraction

    def build(self) -> Batch:
        d = self.d
        target = multiplication_table(d).flatten()
        pairs = torch.stack(torch.meshgrid(torch.arange(d), torch.arange(d), indexing="ij"), -1)
        pairs = pairs.reshape(-1, 2)
        order = torch.randperm(d * d, generator=self.generator())
        n_obs = min(max(1, round(self.observed_fraction * d * d)), d * d - 1)
        train, test = order[:n_obs], order[n_obs:]
        return {"train": (pairs[train], target[train]), "test": (pairs[test], target[test])}
