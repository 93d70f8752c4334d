"""Gradient steps (the paper's norm-decay invariant), the evaluation schedule, the objectives."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grokkit.data import SparseLinearData
from grokkit.errors import ConfigError
from grokkit.models import DiagonalNet
from grokkit.objectives import (
    OBJECTIVES,
    binary_accuracy,
    logistic_loss,
    mse_loss,
    multiclass_accuracy,
)
from grokkit.schedule import EvalSchedule, warmup_lr
from grokkit.task import GrokTask

# ---------------------------------------------------------------- training: norm invariant

D, N_TRAIN, ALPHA, LR, WD = 2000, 64, 128.0, 0.01, 0.01


def _data() -> SparseLinearData:
    dm = SparseLinearData(d=D, k=3, n_train=N_TRAIN, n_test=500, seed=0)
    dm.setup("fit")
    return dm


def _param_norm(task: GrokTask) -> float:
    return torch.cat([p.detach().flatten() for p in task.parameters()]).norm().item()


def test_kernel_phase_norm_follows_exponential_decay():
    """PAPER.md §4: ‖θ_k‖ ≈ α·exp(−η·λ·k) during the plateau (checked to 1%)."""
    torch.manual_seed(0)
    dm = _data()
    task = GrokTask(DiagonalNet(D, depth=2), alpha=ALPHA, lr=LR, weight_decay=WD)
    optimizer = task.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    x, y = dm.splits["train"]
    checkpoints = {0, 1, 10, 100, 500, 1000, 1500, 2000}
    norms = {0: _param_norm(task)}
    for k in range(1, max(checkpoints) + 1):
        task.gradient_step(optimizer, x, y, LR)
        if k in checkpoints:
            norms[k] = _param_norm(task)
    for k in sorted(checkpoints):
        expected = ALPHA * math.exp(-LR * WD * k)
        assert norms[k] == pytest.approx(expected, rel=0.01), f"step {k}"
    # the checks above must be able to tell decay from no decay
    assert norms[2000] < 0.85 * ALPHA
    # still in the kernel phase: far before the predicted switch ln(α)/λ, train set fitted
    assert task.flow_time < 0.1 * task.predicted_transition_time
    row = task.evaluate(dm.splits)
    assert row["train/acc"] == 1.0
    assert row["param_norm"] == pytest.approx(norms[2000], rel=1e-6)
    assert row["time"] == pytest.approx(LR * 2000)


def test_no_weight_decay_keeps_norm_near_alpha():
    # Control for the invariant: without λ the norm does not decay (it grows slightly).
    dm = _data()
    task = GrokTask(DiagonalNet(D, depth=2), alpha=ALPHA, lr=LR, weight_decay=0.0)
    optimizer = task.configure_optimizers()
    x, y = dm.splits["train"]
    for _ in range(300):
        task.gradient_step(optimizer, x, y, LR)
    assert _param_norm(task) >= ALPHA * (1 - 1e-5)
    assert _param_norm(task) == pytest.approx(ALPHA, rel=0.01)


def test_flow_time_is_sum_of_learning_rates_with_warmup():
    dm = _data()
    task = GrokTask(
        DiagonalNet(D, depth=2),
        alpha=ALPHA,
        lr=LR,
        weight_decay=WD,
        lr_warmup_steps=50,
        lr_warmup_start=1e-4,
    )
    optimizer = task.configure_optimizers()
    x, y = dm.splits["train"]
    lrs = []
    for step in range(300):
        lr = task.lr_at(step)
        task.gradient_step(optimizer, x, y, lr)
        lrs.append(lr)
        assert optimizer.param_groups[0]["lr"] == lr  # the step used this learning rate
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[-1] == LR
    assert len(set(lrs[:50])) == 50  # warm-up varies the step size
    assert task.flow_time == pytest.approx(math.fsum(lrs), rel=1e-12)
    assert task.flow_time < 300 * LR
    # the invariant in flow time: ‖θ‖ ≈ α·exp(−λ·t) with t = Σ η
    assert _param_norm(task) == pytest.approx(ALPHA * math.exp(-WD * task.flow_time), rel=0.01)


def test_gradient_step_is_coupled_weight_decay_gd():
    # One step by hand: θ ← θ − η(∇L + λθ), on a random (non-init) point.
    torch.manual_seed(0)
    d, n = 20, 8
    x = torch.randint(0, 2, (n, d)).float() * 2 - 1
    y = torch.randint(0, 2, (n,)).float() * 2 - 1
    net = DiagonalNet(d, depth=2)
    task = GrokTask(net, alpha=2.0, lr=0.1, weight_decay=0.3)
    with torch.no_grad():
        net.u.copy_(torch.randn(d))
        net.v.copy_(torch.randn(d))
    u0, v0 = net.u.detach().clone().requires_grad_(), net.v.detach().clone().requires_grad_()
    loss = F.softplus(-y * (x @ (u0**2 - v0**2))).mean()
    gu, gv = torch.autograd.grad(loss, (u0, v0))
    task.gradient_step(task.configure_optimizers(), x, y, 0.05)
    torch.testing.assert_close(net.u.detach(), u0.detach() - 0.05 * (gu + 0.3 * u0.detach()))
    torch.testing.assert_close(net.v.detach(), v0.detach() - 0.05 * (gv + 0.3 * v0.detach()))
    assert task.flow_time == 0.05


def test_predicted_transition_time():
    task = GrokTask(DiagonalNet(4), alpha=128.0, weight_decay=1e-3)
    assert task.predicted_transition_time == pytest.approx(math.log(128.0) / 1e-3)
    assert GrokTask(DiagonalNet(4), alpha=128.0, weight_decay=0.0).predicted_transition_time is None
    assert GrokTask(DiagonalNet(4), alpha=1.0, weight_decay=0.1).predicted_transition_time is None


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"lr": 0.0}, "model.lr"),
        ({"weight_decay": -1e-3}, "model.weight_decay"),
        ({"lr_warmup_steps": -1}, "model.lr_warmup_steps"),
        ({"lr_warmup_steps": 10}, "model.lr_warmup_start"),
        ({"lr_warmup_steps": 10, "lr_warmup_start": 0.0}, "model.lr_warmup_start"),
        ({"eval_points": 0}, "model.eval_points"),
    ],
)
def test_bad_task_values_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as info:
        GrokTask(DiagonalNet(3), **kwargs)
    assert key in str(info.value)


# ---------------------------------------------------------------- schedule


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


def test_task_lr_at_uses_warmup():
    task = GrokTask(DiagonalNet(3), lr=1.0, lr_warmup_steps=4, lr_warmup_start=1e-4)
    assert [task.lr_at(s) for s in range(6)] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1.0])


# ---------------------------------------------------------------- objectives


def test_binary_accuracy_counts_ties_as_half():
    y = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    out = torch.tensor([2.0, -0.5, -1.0, 3.0, 0.0, 0.0, 0.0, 1e-8])
    # correct, correct, wrong, wrong, tie, tie, tie, wrong -> (2 + 3/2) / 8
    assert binary_accuracy(out, y).item() == pytest.approx(3.5 / 8)
    # zero-output init: every sample is a tie -> exactly one half
    assert binary_accuracy(torch.zeros(5), torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0])).item() == 0.5


def test_logistic_loss_is_mean_softplus_of_negative_margin():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(50, generator=gen, dtype=torch.float64) * 5
    y = (torch.randint(0, 2, (50,), generator=gen) * 2 - 1).double()
    expected = sum(
        math.log1p(math.exp(-yi * fi)) for yi, fi in zip(y.tolist(), out.tolist(), strict=True)
    )
    assert logistic_loss(out, y).item() == pytest.approx(expected / 50, rel=1e-12)
    assert logistic_loss(torch.zeros(3), torch.ones(3)).item() == pytest.approx(math.log(2))
    # stable for large margins
    big = logistic_loss(torch.tensor([-1000.0]), torch.tensor([1.0])).item()
    assert big == pytest.approx(1000.0)


def test_multiclass_accuracy_is_micro_averaged():
    # 4 samples of class 0 (all right) and 1 of class 1 (wrong): micro = 4/5, macro would be 1/2.
    out = torch.tensor(
        [[5.0, 0.0, 0.0]] * 4 + [[0.0, 0.0, 1.0]],
    )
    y = torch.tensor([0, 0, 0, 0, 1])
    assert multiclass_accuracy(out, y).item() == pytest.approx(0.8)


def test_mse_loss_has_no_half():
    assert mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item() == 5.0


def test_objective_table():
    assert OBJECTIVES["logistic"].accuracy is binary_accuracy
    assert OBJECTIVES["cross_entropy"].accuracy is multiclass_accuracy
    assert OBJECTIVES["mse"].accuracy is None
