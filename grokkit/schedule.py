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
