"""Callbacks that act at evaluation points (a few hundred per run), not at every step."""

import lightning.pytorch as pl

from grokkit.data.full_batch import Batch


class EvaluationCallback(pl.Callback):
    """Receives each evaluation row before it is logged; may add its own columns to it.

    ``row`` holds step, time, train/test loss and accuracy and param_norm; ``batch`` holds the
    full train and test splits on the training device.
    """

    def on_evaluation(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        pass
