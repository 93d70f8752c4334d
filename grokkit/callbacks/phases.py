"""Detect the memorization and grokking times from the evaluation rows."""

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch
from grokkit.errors import require


class PhaseDetector(EvaluationCallback):
    """Memorization: first evaluation with train/acc ≥ ``memorization_threshold``.
    Grokking: first evaluation at or after memorization with test/acc ≥ ``grokking_threshold``.
    Misgrokking: first evaluation after grokking with test/acc < ``misgrokking_threshold``
    (the test accuracy collapses after having generalized, paper Fig. 1b).

    Times are gradient-flow times (Σ η). Runs without accuracy columns (regression) leave both
    null. The state is saved in checkpoints, so a resumed run keeps the times already found.

    Args:
        memorization_threshold: train accuracy that counts as memorized.
        grokking_threshold: test accuracy that counts as generalized.
        misgrokking_threshold: test accuracy that, once fallen below after grokking, counts as
            misgrokked.
    """

    def __init__(
        self,
        memorization_threshold: float = 0.99,
        grokking_threshold: float = 0.95,
        misgrokking_threshold: float = 0.6,
    ) -> None:
        require(
            0 < memorization_threshold <= 1,
            f"phases.memorization_threshold must be in (0, 1], got {memorization_threshold}",
        )
        require(
            0 < grokking_threshold <= 1,
            f"phases.grokking_threshold must be in (0, 1], got {grokking_threshold}",
        )
        require(
            0 <= misgrokking_threshold < grokking_threshold,
            f"phases.misgrokking_threshold must be in [0, phases.grokking_threshold="
            f"{grokking_threshold}), got {misgrokking_threshold}",
        )
        self.memorization_threshold = memorization_threshold
        self.grokking_threshold = grokking_threshold
        self.misgrokking_threshold = misgrokking_threshold
        self.memorization_step: int | None = None
        self.memorization_time: float | None = None
        self.grokking_step: int | None = None
        self.grokking_time: float | None = None
        self.misgrokking_step: int | None = None
        self.misgrokking_time: float | None = None

    def on_evaluation(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        if "train/acc" not in row:
            return
        if self.memorization_step is None and row["train/acc"] >= self.memorization_threshold:
            self.memorization_step, self.memorization_time = int(row["step"]), row["time"]
            rank_zero_info(f"memorized at step {row['step']} (t = {row['time']:.4g})")
        if (
            self.memorization_step is not None
            and self.grokking_step is None
            and row["test/acc"] >= self.grokking_threshold
        ):
            self.grokking_step, self.grokking_time = int(row["step"]), row["time"]
            rank_zero_info(f"grokked at step {row['step']} (t = {row['time']:.4g})")
        elif (
            self.grokking_step is not None
            and self.misgrokking_step is None
            and row["test/acc"] < self.misgrokking_threshold
        ):
            self.misgrokking_step, self.misgrokking_time = int(row["step"]), row["time"]
            rank_zero_info(f"misgrokked at step {row['step']} (t = {row['time']:.4g})")

    def summary(self) -> dict[str, Any]:
        return {
            "memorization_step": self.memorization_step,
            "memorization_time": self.memorization_time,
            "grokking_step": self.grokking_step,
            "grokking_time": self.grokking_time,
            "misgrokking_step": self.misgrokking_step,
            "misgrokking_time": self.misgrokking_time,
            "thresholds": {
                "memorization_train_acc": self.memorization_threshold,
                "grokking_test_acc": self.grokking_threshold,
                "misgrokking_test_acc": self.misgrokking_threshold,
            },
        }

    _STATE = (
        "memorization_step",
        "memorization_time",
        "grokking_step",
        "grokking_time",
        "misgrokking_step",
        "misgrokking_time",
    )

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._STATE}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in self._STATE:
            setattr(self, key, state_dict.get(key))
