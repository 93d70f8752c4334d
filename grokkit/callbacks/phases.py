"""Detect the memorization, grokking and misgrokking times from the evaluation rows."""

import math
from collections.abc import Iterable
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
    - misgrokking: after memorization, test/acc first falls below ``misgrokking_fraction`` of
      its peak since memorization, once that peak has reached ``misgrokking_min_peak`` (the test
      accuracy collapses after having generalized, paper Fig. 1b; the peak need not have been
      grokking's).

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
        misgrokking_fraction: share of the peak test accuracy that, once fallen below, counts
            as misgrokked.
        misgrokking_min_peak: the peak test accuracy must reach this first (a run at chance
            level never misgrokks).
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
        "peak_test_acc",
        "previous",
        "log10_times",
    )

    def __init__(
        self,
        memorization_threshold: float = 0.99,
        grokking_threshold: float = 0.95,
        misgrokking_fraction: float = 0.6,
        misgrokking_min_peak: float = 0.75,
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
            0 < misgrokking_fraction < 1,
            f"phases.misgrokking_fraction must be in (0, 1), got {misgrokking_fraction}",
        )
        require(
            0 < misgrokking_min_peak <= 1,
            f"phases.misgrokking_min_peak must be in (0, 1], got {misgrokking_min_peak}",
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
        self.misgrokking_fraction = misgrokking_fraction
        self.misgrokking_min_peak = misgrokking_min_peak
        self.memorization_loss = memorization_loss
        self.grokking_loss_ratio = grokking_loss_ratio
        self.memorization_step: int | None = None
        self.memorization_time: float | None = None
        self.memorization_test_loss: float | None = None
        self.grokking_step: int | None = None
        self.grokking_time: float | None = None
        self.misgrokking_step: int | None = None
        self.misgrokking_time: float | None = None
        self.peak_test_acc = -math.inf  # the highest test accuracy since memorization
        self.previous: dict[str, float] | None = None  # the last row's values, to interpolate
        self.log10_times: dict[str, float] = {}  # phase -> log10 t, on the log10 t clock

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        previous, self.previous = self.previous, {k: row[k] for k in _KEPT if k in row}
        classification = "train/acc" in row
        # loss-normalized runs: t may pass 10^308, so crossings are placed on log10 t
        clock = "log10_time" if "log10_time" in row else "time"

        def crossing(key: str, threshold: float, **kind: bool) -> tuple[int, float] | None:
            return _crossing(previous, row, key, threshold, clock=clock, **kind)

        if self.memorization_step is None:
            if classification:
                crossed = crossing("train/acc", self.memorization_threshold)
            else:
                crossed = crossing("train/loss", self.memorization_loss, falling=True, log=True)
            if crossed is None:
                return
            self._found("memorization", crossed, clock)
            self.memorization_test_loss = row.get("test/loss")
        if self.grokking_step is None:
            if classification:
                crossed = crossing("test/acc", self.grokking_threshold)
            else:
                level = self.grokking_loss_ratio * self.memorization_test_loss
                crossed = crossing("test/loss", level, falling=True, log=True)
            if crossed is not None:
                self._found("grokking", crossed, clock, after="memorization")
        if classification and self.misgrokking_step is None:
            self.peak_test_acc = max(self.peak_test_acc, row["test/acc"])
            if self.peak_test_acc >= self.misgrokking_min_peak:
                level = self.misgrokking_fraction * self.peak_test_acc
                crossed = crossing("test/acc", level, falling=True, strict=True)
                if crossed is not None:
                    self._found("misgrokking", crossed, clock, after="memorization")

    def _found(
        self, phase: str, at: tuple[int, float], clock: str, after: str | None = None
    ) -> None:
        """Set ``<phase>_step`` and ``<phase>_time`` (never before the phase ``after``)."""
        step, when = at
        if clock == "log10_time":
            if after is not None:
                when = max(when, self.log10_times[after])
            self.log10_times[phase] = when
            when = 10.0**when if when < 308 else math.inf
        elif after is not None:
            when = max(when, getattr(self, f"{after}_time"))
        if after is not None:
            step = max(step, getattr(self, f"{after}_step"))
        setattr(self, f"{phase}_step", step)
        setattr(self, f"{phase}_time", when)
        verb = {"memorization": "memorized", "grokking": "grokked", "misgrokking": "misgrokked"}
        rank_zero_info(f"{verb[phase]} at step {step} (t = {when:.4g})")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.log10_times = self.log10_times or {}
        if self.peak_test_acc is None:  # a checkpoint from before the peak was kept
            self.peak_test_acc = -math.inf

    def summary(self) -> dict[str, Any]:
        return {
            "memorization_step": self.memorization_step,
            "memorization_time": self.memorization_time,
            "grokking_step": self.grokking_step,
            "grokking_time": self.grokking_time,
            "misgrokking_step": self.misgrokking_step,
            "misgrokking_time": self.misgrokking_time,
            **{f"{phase}_log10_time": v for phase, v in self.log10_times.items()},
            "thresholds": {
                "memorization_train_acc": self.memorization_threshold,
                "grokking_test_acc": self.grokking_threshold,
                "misgrokking_fraction_of_peak": self.misgrokking_fraction,
                "misgrokking_min_peak": self.misgrokking_min_peak,
                "memorization_train_loss": self.memorization_loss,
                "grokking_test_loss_ratio": self.grokking_loss_ratio,
            },
        }


_KEPT = ("step", "time", "log10_time", "train/acc", "test/acc", "train/loss", "test/loss")


def first_crossing(
    rows: Iterable[dict[str, float]], key: str, threshold: float, clock: str = "time"
) -> tuple[int, float] | None:
    """(step, time) where ``key`` first rises from below ``threshold`` to it or above, in a run's
    rows (e.g. metrics.csv read back), interpolated as the detector does; None if it never does.
    Rows without a finite value are skipped."""
    previous = None
    for row in rows:
        value = row.get(key, math.nan)
        if not math.isfinite(value):
            continue
        if previous is not None and previous[key] < threshold <= value:
            return _crossing(previous, row, key, threshold, clock=clock)
        previous = row
    return None


def _crossing(
    previous: dict[str, float] | None,
    row: dict[str, float],
    key: str,
    threshold: float,
    falling: bool = False,
    log: bool = False,
    strict: bool = False,
    clock: str = "time",
) -> tuple[int, float] | None:
    """Where ``row[key]`` has crossed ``threshold`` (upwards, or downwards with ``falling``;
    ``strict``: must pass it, not just reach it): None if it has not; else (step, time),
    interpolated linearly in ``clock`` (time, or log10_time) between ``previous`` and ``row``
    (in the log of the value with ``log``, for losses spanning decades). The step is the first
    whole step at or after the interpolated crossing. Without a usable previous row, the
    row's own step and time."""
    value = row[key]
    sign = -1.0 if falling else 1.0
    reached = sign * value > sign * threshold if strict else sign * value >= sign * threshold
    if not reached:  # (NaN never reaches)
        return None
    step, time = int(row["step"]), float(row[clock])
    before = None if previous is None else previous.get(key)
    if (
        before is None
        or not math.isfinite(before)
        or not math.isfinite(previous.get(clock, math.nan))
        or (log and min(before, value, threshold) <= 0)
    ):
        return step, time
    if log:
        before, value, threshold = math.log(before), math.log(value), math.log(threshold)
    fraction = (threshold - before) / (value - before) if value != before else 1.0
    fraction = min(max(fraction, 0.0), 1.0)
    step0, time0 = previous["step"], previous[clock]
    crossed_step = math.ceil(step0 + fraction * (step - step0) - 1e-9)
    return min(max(crossed_step, int(step0)), step), time0 + fraction * (time - time0)
