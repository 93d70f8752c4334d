"""Callbacks that act at evaluation points (a few hundred per run), not at every step."""

from typing import Any

import lightning.pytorch as pl

from grokkit.data.full_batch import Batch
from grokkit.errors import require


class EvaluationCallback(pl.Callback):
    """Receives each evaluation row before it is logged; may add its own columns to it.

    The cadence and the saved state live here: ``on_row`` runs at every ``every``-th evaluation
    row (the first one included) and wherever ``due`` says so; the evaluation counter and the
    attributes named in ``STATE`` are saved in checkpoints, so a resumed run keeps both.

    ``row`` holds step, time, train/test loss and accuracy and param_norm; ``batch`` holds the
    full train and test splits on the training device.
    """

    STATE: tuple[str, ...] = ()  # attribute names a checkpoint keeps (besides the counter)

    def __init__(self, every: int = 1) -> None:
        require(every >= 1, f"{type(self).__name__}.every must be >= 1, got {every}")
        self.every = every
        self.evaluations = 0  # evaluation rows seen so far

    def on_evaluation(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        index = self.evaluations
        self.evaluations += 1
        if index % self.every == 0 or self.due(trainer, task, row):
            self.on_row(trainer, task, batch, row)

    def due(self, trainer: pl.Trainer, task: pl.LightningModule, row: dict[str, float]) -> bool:
        """Whether a row off the ``every`` cadence still needs ``on_row`` (default: never)."""
        return False

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        """The callback's work at an evaluation row it is due at."""

    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations, **{k: getattr(self, k) for k in self.STATE}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in self.STATE:
            setattr(self, key, state_dict.get(key))
        self.evaluations = state_dict.get("evaluations") or 0
