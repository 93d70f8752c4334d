"""Detect the memorization, grokking and misgrokking times from the evaluation rows."""

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch
from grokkit.errors import require


class PhaseDetector(EvaluationCallback):
    """Finds the phase times in the evaluation rows (times are gradient-flow times, Σ η).

    Classification (rows with accuracy columns):
    - memorization: first evaluation with train/acc ≥ ``memorization_threshold``;
    - grokking: first evaluation at or after memorization with test/acc ≥ ``grokking_threshold``;
    - misgrokking: first evaluation after grokking with test/acc < ``misgrokking_threshold``
      (the test accuracy collapses after having generalized, paper Fig. 1b).

    Regression (no accuracy columns):
    - memorization: first evaluation with train/loss ≤ ``memorization_loss``;
    - grokking: first evaluation after it with test/loss ≤ ``grokking_loss_ratio`` × the test
      loss at memorization (the plateau's level); misgrokking is not defined.

    The state is saved in checkpoints, so a resumed run keeps the times already found.

    Args:
        memorization_threshold: train accuracy that counts as memorized.
        grokking_threshold: test accuracy that counts as generalized.
        misgrokking_threshold: test accuracy that, once fallen below after grokking, counts as
            misgrokked.
        memorization_loss: train loss that counts as memorized (regression).
        grokking_loss_ratio: fraction of the memorization-time test loss that counts as
            generalized (regression).
    """

    STATE = (
        "memorization_step",
        "memorization_time",
        "memorization_test_loss",
        "grokking_step",
        "grokking_time",
        "misgrokking_step",
        "misgrokking_time",
    )

    def __init__(
        self,
        memorization_threshold: float = 0.99,
        grokking_threshold: float = 0.95,
        misgrokking_threshold: float = 0.6,
        memorization_loss: float = 1e-4,
        grokking_loss_ratio: float = 0.01,
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
        require(
            memorization_loss > 0, f"phases.memorization_loss must be > 0, got {memorization_loss}"
        )
        require(
            0 < grokking_loss_ratio < 1,
            f"phases.grokking_loss_ratio must be in (0, 1), got {grokking_loss_ratio}",
        )
        super().__init__()
        self.memorization_threshold = memorization_threshold
        self.grokking_threshold = grokking_threshold
        self.misgrokking_threshold = misgrokking_threshold
        self.memorization_loss = memorization_loss
        self.grokking_loss_ratio = grokking_loss_ratio
        self.memorization_step: int | None = None
        self.memorization_time: float | None = None
        self.memorization_test_loss: float | None = None
        self.grokking_step: int | None = None
        self.grokking_time: float | None = None
        self.misgrokking_step: int | None = None
        self.misgrokking_time: float | None = None

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        classification = "train/acc" in row
        if self.memorization_step is None:
            memorized = (
                row["train/acc"] >= self.memorization_threshold
                if classification
                else row["train/loss"] <= self.memorization_loss
            )
            if memorized:
                self.memorization_step, self.memorization_time = int(row["step"]), row["time"]
                self.memorization_test_loss = row.get("test/loss")
                rank_zero_info(f"memorized at step {row['step']} (t = {row['time']:.4g})")
        if self.memorization_step is None:
            return
        if self.grokking_step is None:
            generalized = (
                row["test/acc"] >= self.grokking_threshold
                if classification
                else row["test/loss"] <= self.grokking_loss_ratio * self.memorization_test_loss
            )
            if generalized:
                self.grokking_step, self.grokking_time = int(row["step"]), row["time"]
                rank_zero_info(f"grokked at step {row['step']} (t = {row['time']:.4g})")
        elif (
            classification
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
                "memorization_train_loss": self.memorization_loss,
                "grokking_test_loss_ratio": self.grokking_loss_ratio,
            },
        }
