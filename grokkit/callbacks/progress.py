"""Console lines for logs: one per half decade of steps (of flow time for adaptive runs) and
one per tenth of the run at least, instead of a per-step progress bar (for a live bar, see
``grokkit.callbacks.progress_bar``)."""

import math

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch


class ConsoleProgress(EvaluationCallback):
    def __init__(self, per_decade: int = 2) -> None:
        super().__init__()
        self.per_decade = per_decade
        self._last_bucket: tuple[int, int] | None = None

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        step = int(row["step"])
        horizon = getattr(task, "horizon", None)
        adaptive = task.hparams.integrator == "adaptive"
        # adaptive runs: buckets of the integrator's clock (in units of the first evaluation
        # time, lr); it is s, not t, for a loss-normalized run (t may be inf)
        clock = task.clock / task.hparams.lr if adaptive else step
        end = horizon if adaptive else trainer.max_steps
        bucket = (
            int(math.log10(clock) * self.per_decade) if clock > 0 else -1,
            int(10 * (task.clock if adaptive else step) / end) if end else 0,
        )
        if bucket == self._last_bucket and not task.at_end:
            return
        self._last_bucket = bucket
        name = "s" if adaptive and task.hparams.lr_normalize_by_loss else "t"
        value = task.clock if name == "s" else row["time"]
        shown = [f"step {step:>9d}/{trainer.max_steps}", f"{name} {value:10.4g}"]
        if horizon is not None:
            shown[1] += f"/{horizon:.4g}"
        shown += [f"{k} {v:.4g}" for k, v in row.items() if k not in ("step", "time")]
        rank_zero_info("  ".join(shown))
