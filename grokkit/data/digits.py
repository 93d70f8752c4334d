"""Omnigrok-style image classification on scikit-learn's 8×8 digits (ships with the package)."""

import torch

from grokkit.data.full_batch import Batch, FullBatchDataModule
from grokkit.errors import require


class DigitsData(FullBatchDataModule):
    """1 797 images of 8×8 pixels scaled to [0, 1], labels 0-9; ``n_train`` random images train,
    the rest test. (MNIST needs a download; these digits serve the same purpose offline.)

    Args:
        n_train: number of training images, 1 ≤ n_train < 1797.
        seed: data seed (the split), separate from the model seed.
    """

    num_images = 1797

    def __init__(self, n_train: int = 1000, seed: int = 0) -> None:
        super().__init__(seed)
        require(
            1 <= n_train < self.num_images,
            f"data.n_train must be in [1, {self.num_images}), got {n_train}",
        )
        self.n_train = n_train
        self.num_classes = 10

    def build(self) -> Batch:
        from sklearn.datasets import load_digits  # imported here: only this data set needs it

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        y = torch.tensor(digits.target, dtype=torch.long)
        order = torch.randperm(len(y), generator=self.generator())
        train, test = order[: self.n_train], order[self.n_train :]
        return {"train": (x[train], y[train]), "test": (x[test], y[test])}
