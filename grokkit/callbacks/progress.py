"""One console line per half decade of steps, instead of a per-step progress bar."""

import math

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch


class ConsoleProgress(EvaluationCallback):
    def __init__(self, per_decade: int = 2) -> None:
        super().__init__()
        self.per_decade = per_decade
        self._last_bucket: int | None = None

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        step = int(row["step"])
        bucket = int(math.log10(step) * self.per_decade) if step > 0 else -1
        if bucket == self._last_bucket and step != trainer.max_steps:
            return
        self._last_bucket = bucket
        shown = [f"step {step:>9d}/{trainer.max_steps}", f"t {row['time']:10.4g}"]
        shown += [f"{k} {v:.4g}" for k, v in row.items() if k not in ("step", "time")]
        rank_zero_info("  ".join(shown))
