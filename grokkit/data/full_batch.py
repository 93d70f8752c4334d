"""Base class for data sets that are used whole at every step (full-batch gradient descent)."""

from collections.abc import Iterator

import lightning.pytorch as pl
import torch

Split = tuple[torch.Tensor, torch.Tensor]
Batch = dict[str, Split]


class FullBatchLoader:
    """Yields the same dict of full splits, forever (training) or once (evaluation).

    Training is one endless "epoch": every item is one chunk of gradient steps between two
    evaluation points, so Lightning's per-batch work runs a few hundred times per run, not at
    every step.
    """

    def __init__(self, datamodule: "FullBatchDataModule", splits: tuple[str, ...], repeat: bool):
        self.datamodule = datamodule
        self.splits = splits
        self.repeat = repeat

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield {name: self.datamodule.splits[name] for name in self.splits}
            if not self.repeat:
                return

    def __len__(self) -> int:
        if self.repeat:
            raise TypeError("the training loader is endless; the run length is trainer.max_steps")
        return 1


class FullBatchDataModule(pl.LightningDataModule):
    """Subclasses implement ``build()`` returning {"train": (x, y), "test": (x, y)}.

    Data are generated from ``seed`` alone (a private generator), independent of the global seed
    that initializes the model. Tensors move to the training device once and stay there.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self.splits: Batch = {}

    def build(self) -> Batch:
        raise NotImplementedError

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.build()

    def train_dataloader(self) -> FullBatchLoader:
        return FullBatchLoader(self, ("train", "test"), repeat=True)

    def val_dataloader(self) -> FullBatchLoader:
        return FullBatchLoader(self, ("train", "test"), repeat=False)

    def test_dataloader(self) -> FullBatchLoader:
        return FullBatchLoader(self, ("train", "test"), repeat=False)

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int):
        # Move the stored splits once; later batches are already there.
        for name in batch:
            x, y = self.splits[name]
            if x.device != device:
                self.splits[name] = (x.to(device), y.to(device))
        return {name: self.splits[name] for name in batch}
