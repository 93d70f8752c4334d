"""Progress bars over gradient steps, for ``--trainer.enable_progress_bar=true``.

Lightning's bars count training batches, and a grokkit batch is a whole chunk of gradient
steps between two evaluation points (28/5000 at the end of a 5 000-step run). These count
``trainer.global_step`` against ``trainer.max_steps`` (so tqdm's rate and ETA are in steps)
and show the flow time and the last row's accuracies.
"""

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

SHOWN = ("train/acc", "test/acc", "train/loss")


def row_summary(task: pl.LightningModule) -> dict[str, float]:
    """Flow time and the last evaluation row's accuracies (losses for regression)."""
    row = getattr(task, "last_row", None) or {}
    shown = {"t": row["time"]} if "time" in row else {}
    shown.update({key: row[key] for key in SHOWN if key in row})
    if "train/acc" in row:
        shown.pop("train/loss", None)
    return shown


class StepProgressBar(TQDMProgressBar):
    """tqdm over gradient steps (the bar grokkit adds for ``trainer.enable_progress_bar``)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.total, bar.unit = trainer.max_steps, "step"
        bar.initial = bar.n = trainer.global_step  # (a resumed run starts where it stopped)
        bar.set_description("gradient steps")

    def on_train_batch_end(self, trainer: pl.Trainer, task: pl.LightningModule, *_: Any) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, task), refresh=False)
            bar.refresh()

    def get_metrics(self, trainer: pl.Trainer, task: pl.LightningModule) -> dict[str, Any]:
        return {k: f"{v:.4g}" for k, v in row_summary(task).items()}


class RichStepProgressBar(RichProgressBar):
    """The same over gradient steps with rich (``pip install rich``), for terminals that
    render it: ``--trainer.callbacks+=grokkit.callbacks.RichStepProgressBar``."""

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps

    def _get_train_description(self, current_epoch: int) -> str:
        return "gradient steps"

    def on_train_batch_end(self, trainer: pl.Trainer, task: pl.LightningModule, *_: Any) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, task)

    def get_metrics(self, trainer: pl.Trainer, task: pl.LightningModule) -> dict[str, Any]:
        return dict(row_summary(task))
