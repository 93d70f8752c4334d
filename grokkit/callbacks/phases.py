"""Detect the memorization, grokking and misgrokking times from the evaluation rows."""

import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch
from grokkit.errors import require


class PhaseDetector(EvaluationCallback):
    """Finds the phase times in the evaluation rows (times are gradient-flow times, Σ η).

    Classification (rows with accuracy columns):
    - memorization: train/acc first reaches ``memorization_threshold``;
    - grokking: test/acc first reaches ``grokking_threshold``, at or after memorization;
    - misgrokking: test/acc first falls below ``misgrokking_threshold`` after grokking
      (the test accuracy collapses after having generalized, paper Fig. 1b).

    Regression (no accuracy columns):
    - memorization: train/loss first reaches ``memorization_loss``;
    - grokking: after it, test/loss first reaches ``grokking_loss_ratio`` × the test loss at
      memorization (the plateau's level); misgrokking is not defined.

    Each time is interpolated between the two evaluation rows that bracket the crossing
    (linearly in time; in the log of the loss for losses), not the first row past it: on a
    log-spaced schedule that row can be several percent late. Steps are the first whole step
    at or after the interpolated crossing.

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
        "previous",
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
        self.previous: dict[str, float] | None = None  # the last row's values, to interpolate

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        previous, self.previous = self.previous, {k: row[k] for k in _KEPT if k in row}
        classification = "train/acc" in row
        if self.memorization_step is None:
            if classification:
                crossed = _crossing(previous, row, "train/acc", self.memorization_threshold)
            else:
                crossed = _crossing(
                    previous, row, "train/loss", self.memorization_loss, falling=True, log=True
                )
            if crossed is None:
                return
            self.memorization_step, self.memorization_time = crossed
            self.memorization_test_loss = row.get("test/loss")
            _announce("memorized", crossed)
        if self.grokking_step is None:
            if classification:
                crossed = _crossing(previous, row, "test/acc", self.grokking_threshold)
            else:
                level = self.grokking_loss_ratio * self.memorization_test_loss
                crossed = _crossing(previous, row, "test/loss", level, falling=True, log=True)
            if crossed is not None:  # never before memorization
                self.grokking_step = max(crossed[0], self.memorization_step)
                self.grokking_time = max(crossed[1], self.memorization_time)
                _announce("grokked", (self.grokking_step, self.grokking_time))
        elif classification and self.misgrokking_step is None:
            crossed = _crossing(
                previous, row, "test/acc", self.misgrokking_threshold, falling=True, strict=True
            )
            if crossed is not None:
                self.misgrokking_step = max(crossed[0], self.grokking_step)
                self.misgrokking_time = max(crossed[1], self.grokking_time)
                _announce("misgrokked", crossed)

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


_KEPT = ("step", "time", "train/acc", "test/acc", "train/loss", "test/loss")


def _crossing(
    previous: dict[str, float] | None,
    row: dict[str, float],
    key: str,
    threshold: float,
    falling: bool = False,
    log: bool = False,
    strict: bool = False,
) -> tuple[int, float] | None:
    """Where ``row[key]`` has crossed ``threshold`` (upwards, or downwards with ``falling``;
    ``strict``: must pass it, not just reach it): None if it has not; else (step, time),
    interpolated linearly in time between ``previous`` and ``row`` (in the log of the value
    with ``log``, for losses spanning decades). The step is the first whole step at or after
    the interpolated crossing. Without a usable previous row, the row's own step and time."""
    value = row[key]
    sign = -1.0 if falling else 1.0
    reached = sign * value > sign * threshold if strict else sign * value >= sign * threshold
    if not reached:  # (NaN never reaches)
        return None
    step, time = int(row["step"]), float(row["time"])
    before = None if previous is None else previous.get(key)
    if before is None or not math.isfinite(before) or (log and min(before, value, threshold) <= 0):
        return step, time
    if log:
        before, value, threshold = math.log(before), math.log(value), math.log(threshold)
    fraction = (threshold - before) / (value - before) if value != before else 1.0
    fraction = min(max(fraction, 0.0), 1.0)
    step0, time0 = previous["step"], previous["time"]
    crossed_step = math.ceil(step0 + fraction * (step - step0) - 1e-9)
    return min(max(crossed_step, int(step0)), step), time0 + fraction * (time - time0)


def _announce(what: str, at: tuple[int, float]) -> None:
    rank_zero_info(f"{what} at step {at[0]} (t = {at[1]:.4g})")
