"""When to evaluate, and the step size at each step."""

import bisect
import math

import numpy as np


class EvalSchedule:
    """Step 0 plus about ``points`` log-spaced steps in [1, max_steps], always ending at max_steps.

    Dense early (every step at first), sparse late: a run of 10^7 steps still has a few hundred
    evaluation points, which is all the bookkeeping Lightning does.
    """

    def __init__(self, max_steps: int, points: int) -> None:
        if points >= max_steps:
            self.steps = list(range(max_steps + 1))
            return
        # Rounding merges the first log-spaced points onto the same small steps; ask for more
        # points until `points` distinct steps remain.
        steps: set[int] = set()
        num = points
        while len(steps) < points:
            steps = {int(round(s)) for s in np.geomspace(1, max_steps, num=num)}
            num += max(1, points - len(steps))
        self.steps = [0, *sorted(steps | {max_steps})]

    def next_after(self, step: int) -> int:
        """The first evaluation step strictly after ``step``."""
        i = bisect.bisect_right(self.steps, step)
        return self.steps[min(i, len(self.steps) - 1)]


def warmup_lr(step: int, lr: float, warmup_steps: int, warmup_start: float | None) -> float:
    """Geometric warm-up from ``warmup_start`` to ``lr`` over ``warmup_steps``, then ``lr``.

    A large step size is only stable once the first steps have left the steep initial region;
    warming up lets CPU-sized runs cover gradient-flow time t = Σ η hundreds of times faster.
    """
    if step >= warmup_steps or warmup_start is None:
        return lr
    return warmup_start * math.exp(math.log(lr / warmup_start) * step / warmup_steps)


class FlowSchedule:
    """Evaluation times for the adaptive integrator: t = 0 plus ``points`` times log-spaced in
    [``first``, ``horizon``] (the integrator lands exactly on each)."""

    def __init__(self, horizon: float, points: int, first: float) -> None:
        first = min(first, horizon)
        self.times = [0.0, *sorted({float(t) for t in np.geomspace(first, horizon, num=points)})]
        self.times[-1] = horizon  # exactly, whatever geomspace rounds to

    def next_after(self, t: float) -> float:
        """The first evaluation time strictly after ``t`` (the horizon at the end)."""
        i = bisect.bisect_right(self.times, t)
        return self.times[min(i, len(self.times) - 1)]


def gd_flow_time(max_steps: int, lr: float, warmup_steps: int, warmup_start: float | None) -> float:
    """t = Σ η over ``max_steps`` gradient-descent steps with the geometric warm-up: the flow
    time a fixed-step run of this config reaches (the adaptive integrator's default horizon)."""
    warm = min(warmup_steps, max_steps) if warmup_start is not None else 0
    if warm == 0:
        return max_steps * lr
    ratio = math.exp(math.log(lr / warmup_start) / warmup_steps)
    if ratio == 1:
        return max_steps * lr
    warm_time = warmup_start * (ratio**warm - 1) / (ratio - 1)  # a geometric series
    return warm_time + (max_steps - warm) * lr
