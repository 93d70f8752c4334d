"""grokkit.schedule: the log-spaced evaluation schedule and the geometric learning-rate warm-up."""

import math

import numpy as np
import pytest

from grokkit.schedule import EvalSchedule, warmup_lr


@pytest.mark.parametrize(
    "max_steps, points", [(1, 1), (5, 1), (10, 3), (2000, 300), (60_000, 300), (10**7, 300)]
)
def test_eval_schedule_shape(max_steps, points):
    steps = EvalSchedule(max_steps, points).steps
    assert steps[0] == 0
    assert steps[-1] == max_steps
    assert all(b > a for a, b in zip(steps, steps[1:], strict=False))
    assert all(isinstance(s, int) for s in steps)
    assert len(steps) <= points + 2  # never more than step 0 + points + max_steps


@pytest.mark.parametrize("max_steps, points", [(60_000, 300), (10**6, 300), (10**7, 300)])
def test_eval_schedule_has_about_points_entries_for_long_runs(max_steps, points):
    steps = EvalSchedule(max_steps, points).steps
    # rounding merges the first log-spaced points onto the same small integers, so a few tens of
    # the requested points are lost; "about" here means at least three quarters of them
    assert 0.75 * points <= len(steps) <= points + 2
    # log-spaced: dense at the start (every step), sparse at the end
    assert steps[:6] == [0, 1, 2, 3, 4, 5]
    assert steps[-1] - steps[-2] > 1000


@pytest.mark.parametrize(
    "max_steps, points", [(1, 1), (2, 5), (3, 3), (4, 10), (20, 100), (50, 1000)]
)
def test_eval_schedule_every_step_when_points_cover_the_run(max_steps, points):
    assert EvalSchedule(max_steps, points).steps == list(range(max_steps + 1))


@pytest.mark.parametrize("max_steps, points", [(7, 7), (10, 10), (100, 100), (300, 300)])
def test_eval_schedule_every_step_when_points_equal_max_steps(max_steps, points):
    assert EvalSchedule(max_steps, points).steps == list(range(max_steps + 1))


def test_eval_schedule_zero_steps():
    assert EvalSchedule(0, 10).steps == [0]


def test_eval_schedule_next_after():
    schedule = EvalSchedule(10_000, 50)
    steps = schedule.steps
    for a, b in zip(steps, steps[1:], strict=False):
        assert schedule.next_after(a) == b
        if b - a > 1:
            assert schedule.next_after(a + 1) == b
            assert schedule.next_after(b - 1) == b
    # past the end it stays at max_steps (the training loop stops there)
    assert schedule.next_after(10_000) == 10_000
    assert schedule.next_after(10**6) == 10_000
    # strictly after: from an evaluation step it never returns that same step
    assert all(schedule.next_after(s) > s for s in steps[:-1])


def test_eval_schedule_chunks_cover_every_step_once():
    # What the training loop does: chunks [start, next_after(start)) tile [0, max_steps).
    schedule = EvalSchedule(5000, 40)
    covered, step = 0, 0
    while step < 5000:
        nxt = schedule.next_after(step)
        assert nxt > step
        covered += nxt - step
        step = nxt
    assert step == 5000 and covered == 5000


def test_warmup_lr_is_geometric_then_constant():
    start, lr, warm = 1e-3, 2.0, 100
    values = [warmup_lr(s, lr, warm, start) for s in range(warm + 50)]
    assert values[0] == pytest.approx(start)
    ratios = np.array(values[1 : warm + 1]) / np.array(values[:warm])
    expected_ratio = (lr / start) ** (1 / warm)
    np.testing.assert_allclose(ratios, expected_ratio, rtol=1e-9)
    assert values[warm // 2] == pytest.approx(math.sqrt(start * lr))  # geometric midpoint
    assert all(v == lr for v in values[warm:])
    assert all(a < b for a, b in zip(values[:warm], values[1 : warm + 1], strict=True))


def test_warmup_lr_disabled():
    assert warmup_lr(0, 0.01, 0, None) == 0.01
    assert warmup_lr(0, 0.01, 0, 1e-5) == 0.01
    assert warmup_lr(3, 0.01, 10, None) == 0.01
