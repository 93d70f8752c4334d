"""Base class for data sets that are used whole at every step (full-batch gradient descent)."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch

Split = tuple[torch.Tensor, torch.Tensor]
Batch = dict[str, Split]


# While an ensemble's members run: data built once per settings (see ``shared_builds``).
_builds: dict[tuple, tuple[Batch, dict[str, Any]]] | None = None
_builds_lock = threading.Lock()


@contextmanager
def shared_builds() -> Iterator[None]:
    """While active, data modules with equal settings share one build: the same splits dict
    (one copy of each tensor in memory, moved to the training device once, and the same tensors,
    so that the members can step together) and the attributes their build sets (w*). Data are a
    function of the settings alone (their own seed), so each member's data equal its run alone's.
    For the members of one ensemble (``grokkit.ensemble``); outside, each module builds its own."""
    global _builds
    _builds = {}
    try:
        yield
    finally:
        _builds = None


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
        if self.splits:
            return
        if _builds is None:
            self.splits = self.build()
            return
        with _builds_lock:
            key = self._settings()
            if key not in _builds:
                before = set(vars(self))
                splits = self.build()
                _builds[key] = (splits, {k: v for k, v in vars(self).items() if k not in before})
            self.splits, built = _builds[key]
        for name, value in built.items():
            setattr(self, name, value)

    def _settings(self) -> tuple:
        """What the data are a function of: the class and its plain-valued attributes."""
        plain = (int, float, str, bool, tuple, type(None))
        values = sorted((k, v) for k, v in vars(self).items() if isinstance(v, plain))
        return (type(self), tuple(values))

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
