"""GrokTask: the α-scaled initialization, gradient steps (coupled weight decay, the paper's
norm-decay invariant, loss-normalized and minibatch steps), flow time and learning-rate warm-up,
the predicted transition time, config errors."""

import copy
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import QUICKSTART, all_pairs

from grokkit.cli import main
from grokkit.data import SparseLinearData
from grokkit.errors import ConfigError
from grokkit.models import MLP, DiagonalNet, MatrixFactorization, TwoLayerReLU
from grokkit.rundir import read_metrics, read_summary
from grokkit.task import GrokTask, log_mean_exp

# ---------------------------------------------------------------- initialization


def _pm1(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n, d), generator=gen) * 2 - 1).to(dtype)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 7.0, 128.0, 1000.0])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("d", [1, 10, 2000])
def test_grok_task_scales_init_to_norm_alpha_with_zero_output(alpha, depth, d):
    net = DiagonalNet(d, depth=depth)
    task = GrokTask(net, alpha=alpha)
    params = torch.cat([p.detach().flatten() for p in task.parameters()])
    assert params.numel() == 2 * d
    assert params.norm().item() == pytest.approx(alpha, rel=1e-5)
    # every coordinate is α/√(2d): the direction is the uniform base init
    torch.testing.assert_close(
        params, torch.full_like(params, alpha / math.sqrt(2 * d)), rtol=1e-6, atol=0
    )
    assert net.alpha == alpha and task.alpha == alpha
    x = torch.cat([_pm1(8, d, seed=0), torch.randn(8, d)])
    with torch.no_grad():
        out = task(x)
    assert torch.all(out == 0)  # exactly, not approximately: u = v at init


def test_grok_task_registers_the_net_parameters():
    net = DiagonalNet(5, depth=2)
    task = GrokTask(net, alpha=3.0)
    assert {id(p) for p in task.parameters()} == {id(net.u), id(net.v)}


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_bad_alpha_raises_config_error(alpha):
    with pytest.raises(ConfigError) as info:
        GrokTask(DiagonalNet(3), alpha=alpha)
    assert "model.alpha" in str(info.value)


# ---------------------------------------------------------------- training: norm invariant

D, N_TRAIN, ALPHA, LR, WD = 2000, 64, 128.0, 0.01, 0.01


def _data() -> SparseLinearData:
    dm = SparseLinearData(d=D, k=3, n_train=N_TRAIN, n_test=500, seed=0)
    dm.setup("fit")
    return dm


def _param_norm(task: GrokTask) -> float:
    return torch.cat([p.detach().flatten() for p in task.parameters()]).norm().item()


def test_kernel_phase_norm_follows_exponential_decay():
    """Early phase (arXiv 2311.18817): ‖θ_k‖ ≈ α·exp(−η·λ·k) on the plateau (to 1%)."""
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


def test_task_lr_at_uses_warmup():
    task = GrokTask(DiagonalNet(3), lr=1.0, lr_warmup_steps=4, lr_warmup_start=1e-4)
    assert [task.lr_at(s) for s in range(6)] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1.0])


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


# ---------------------------------------------------------------- step variants


def _tiny_problem(p: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = all_pairs(p)
    y = (x[:, 0] + x[:, 1]) % p
    net = TwoLayerReLU(p=p, width=8).double()
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=gen, dtype=torch.float64))
    return net, x, y


def _params(task: GrokTask) -> list[torch.Tensor]:
    return [p.detach().clone() for p in task.parameters()]


def test_loss_normalized_step_is_sgd_with_lr_over_loss():
    lr = 0.3
    net, x, y = _tiny_problem()
    task = GrokTask(net, alpha=1.0, loss="cross_entropy", lr=lr, lr_normalize_by_loss=True)
    optimizer = task.configure_optimizers()
    for step in range(2):
        before = _params(task)
        loss = F.cross_entropy(task.net(x), y)
        grads = torch.autograd.grad(loss, list(task.parameters()))
        L = loss.item()
        assert abs(L - 1.0) > 0.1  # a step of lr/L is then clearly not a step of lr
        time_before = task.flow_time
        task.gradient_step(optimizer, x, y, lr)
        after = _params(task)
        for b, g, a in zip(before, grads, after, strict=True):
            torch.testing.assert_close(a, b - (lr / L) * g, rtol=1e-10, atol=1e-12)
        assert not all(
            torch.allclose(a, b - lr * g, rtol=1e-6, atol=1e-9)
            for b, g, a in zip(before, grads, after, strict=True)
        )
        assert task.flow_time - time_before == pytest.approx(lr / L, rel=1e-12), step


def test_reference_schedule_plain_steps_until_log_loss_falls_below_threshold():
    """lr_normalize_below_log_loss: steps of lr_plain on L while log L is above the threshold,
    then steps of lr on log L (η/L on L); flow time and ln t advance accordingly."""
    net, x, y = _tiny_problem()
    start = math.log(F.cross_entropy(net(x), y).item())
    task = GrokTask(
        net,
        loss="cross_entropy",
        lr=0.05,
        lr_normalize_by_loss=True,
        lr_normalize_below_log_loss=start - 0.05,  # crossed after a few plain steps
        lr_plain=0.5,
    )
    optimizer = task.configure_optimizers()
    kinds = []
    for _ in range(40):
        log_loss = math.log(F.cross_entropy(task.net(x), y).item())
        time_before = task.flow_time
        task.gradient_step(optimizer, x, y, 0.05)
        step_time = task.flow_time - time_before
        plain = step_time == pytest.approx(0.5, rel=1e-9)
        if not plain:  # a normalized step: η/L
            assert step_time == pytest.approx(0.05 / math.exp(log_loss), rel=1e-9)
        kinds.append(plain)
    first_normalized = kinds.index(False)
    assert first_normalized > 0 and not any(kinds[first_normalized:])  # plain, then never again
    assert task.log_flow_time == pytest.approx(math.log(task.flow_time), rel=1e-12)


def test_plain_step_advances_flow_time_by_lr():
    net, x, y = _tiny_problem()
    task = GrokTask(net, alpha=1.0, loss="cross_entropy", lr=0.3)
    optimizer = task.configure_optimizers()
    before = _params(task)
    grads = torch.autograd.grad(F.cross_entropy(task.net(x), y), list(task.parameters()))
    task.gradient_step(optimizer, x, y, 0.3)
    for b, g, a in zip(before, grads, _params(task), strict=True):
        torch.testing.assert_close(a, b - 0.3 * g, rtol=1e-10, atol=1e-12)
    assert task.flow_time == pytest.approx(0.3)


def test_batch_size_equal_to_n_train_is_the_full_batch_step():
    net, x, y = _tiny_problem()
    full = GrokTask(copy.deepcopy(net), loss="cross_entropy", lr=0.2)
    whole = GrokTask(copy.deepcopy(net), loss="cross_entropy", lr=0.2, batch_size=len(y))
    small = GrokTask(copy.deepcopy(net), loss="cross_entropy", lr=0.2, batch_size=5)
    for task in (full, whole, small):
        torch.manual_seed(0)
        task.gradient_step(task.configure_optimizers(), x, y, 0.2)
    for a, b in zip(_params(full), _params(whole), strict=True):
        # the same samples in another order: equal up to float64 summation order
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert not all(
        torch.allclose(a, b, rtol=1e-6, atol=1e-9)
        for a, b in zip(_params(full), _params(small), strict=True)
    )


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_minibatch_step_uses_exactly_batch_size_samples(batch_size):
    """Linear net f(x) = ⟨u − v, x⟩ at u = v, MSE, inputs e_1..e_n: sample i moves only
    coordinate i, by 2·lr·y_i/b if it is in the minibatch, so the update shows which samples
    were used and the 1/b averaging."""
    n, lr = 10, 0.1
    x = torch.eye(n, dtype=torch.float64)
    y = torch.arange(1, n + 1, dtype=torch.float64)
    torch.manual_seed(0)
    for _ in range(3):  # fresh draws of the minibatch
        task = GrokTask(DiagonalNet(n, depth=1).double(), loss="mse", lr=lr, batch_size=batch_size)
        u0 = task.net.u.detach().clone()
        task.gradient_step(task.configure_optimizers(), x, y, lr)
        du = task.net.u.detach() - u0
        moved = du.nonzero().flatten()
        assert len(moved) == batch_size
        torch.testing.assert_close(du[moved], 2 * lr * y[moved] / batch_size)
        torch.testing.assert_close(task.net.v.detach() - u0, -du)


def test_predicted_transition_time():
    def task(**kw) -> GrokTask:
        return GrokTask(DiagonalNet(4), **{"alpha": 10.0, "weight_decay": 0.01} | kw)

    assert task().predicted_transition_time == pytest.approx(math.log(10.0) / 0.01)
    assert task(optimizer="adamw").predicted_transition_time is None
    assert task(weight_decay=0.0).predicted_transition_time is None
    assert task(alpha=1.0).predicted_transition_time is None


def test_no_predicted_transition_time_where_the_theory_is_silent():
    """Only homogeneous nets with zero output at θ̄, trained by gradient descent on L."""

    def predicted(net, **kw) -> float | None:
        return GrokTask(net, **{"alpha": 10.0, "weight_decay": 0.01} | kw).predicted_transition_time

    expected = pytest.approx(math.log(10.0) / 0.01)
    assert predicted(TwoLayerReLU(5, 8, zero_last_layer=True)) == expected
    assert predicted(MatrixFactorization(4)) == expected
    assert predicted(TwoLayerReLU(5, 8, zero_last_layer=False)) is None  # f(θ̄) ≠ 0
    assert predicted(MatrixFactorization(4, init_noise=0.1)) is None
    assert predicted(MLP(4, 2, width=8)) is None  # not homogeneous
    normalized = {"weight_decay": 0.0, "lr_normalize_by_loss": True}
    assert predicted(DiagonalNet(4), **normalized) is None


@pytest.mark.parametrize(("bad", "key"), [({"batch_size": 0}, "model.batch_size")])
def test_bad_batch_size_raises_config_error(bad, key):
    with pytest.raises(ConfigError, match=key):
        GrokTask(DiagonalNet(4), **bad)


# ---------------------------------------------------------------- integrators, end to end

# A small E1 (d = 2000) without warm-up: memorizes at t ≈ 0.02, groks near t ≈ 345.
FLOW_E1 = [
    "--config",
    str(QUICKSTART),
    "--data.d=2000",
    "--data.n_train=128",
    "--data.n_test=1000",
    "--model.lr=0.02",
    "--model.eval_points=100",
    "--trainer.callbacks=[]",
]


def test_adaptive_flow_finds_the_phases_of_fixed_step_gd_with_far_fewer_gradients():
    assert main(["fit", *FLOW_E1, "--trainer.max_steps=18000", "--run_dir=runs/gd"]) == 0
    adaptive = ["--model.integrator=adaptive", "--model.max_flow_time=360"]
    assert main(["fit", *FLOW_E1, "--trainer.max_steps=18000", *adaptive, "--run_dir=runs/ad"]) == 0
    gd, ad = read_summary("runs/gd"), read_summary("runs/ad")
    assert gd["integrator"] == "gd" and ad["integrator"] == "adaptive"
    assert gd["gradient_evaluations"] == gd["steps"] == 18_000
    assert ad["status"] == "completed" and ad["time"] == 360.0  # stopped exactly at the horizon
    for phase in ("memorization_time", "grokking_time"):
        assert ad[phase] == pytest.approx(gd[phase], rel=0.05), phase
    # every gradient counted, and far fewer of them than fixed steps at this η
    cols = read_metrics("runs/ad/metrics.csv")
    assert cols["gradient_evaluations"][-1] == ad["gradient_evaluations"]
    assert 30 * ad["gradient_evaluations"] < gd["gradient_evaluations"]
    assert ad["test/acc"] >= 0.95 and ad["train/acc"] == 1.0


# a small E1 without weight decay, loss-normalized: L falls past float64's range in ~10^3 steps
NORMALIZED_E1 = [
    *("--config", str(QUICKSTART), "--data.d=50", "--data.n_train=32", "--data.n_test=100"),
    *("--model.alpha=1", "--model.weight_decay=0", "--model.lr_normalize_by_loss=true"),
    "--trainer.callbacks=[]",
]


def test_loss_normalized_run_goes_past_float64_loss_and_time():
    """log L falls far below −745 (L underflows) and t past 10^308: carried as logarithms."""
    args = [*NORMALIZED_E1, "--model.lr=0.01", "--trainer.max_steps=1200", "--run_dir=runs/e4"]
    assert main(["fit", *args]) == 0
    s = read_summary("runs/e4")
    cols = read_metrics("runs/e4/metrics.csv")
    assert s["status"] == "completed" and min(cols["train/log_loss"]) < -745
    assert cols["log10_time"][-1] > 308 and s["time"] == "inf"  # t itself past float64
    assert all(b >= a for a, b in zip(cols["log10_time"], cols["log10_time"][1:], strict=False))
    # phases are placed on the log10 t clock
    assert s["memorization_step"] > 0 and math.isfinite(s["memorization_log10_time"])
    assert (Path("runs/e4") / "curves.png").stat().st_size > 10_000


def test_log_mean_exp_is_the_mean_of_exp_over_the_interval():
    for delta in (-800.0, -30.0, -1.0, -1e-12, 0.0, 1e-9, 0.3, 40.0, 900.0):
        x = torch.linspace(0, 1, 200_001, dtype=torch.float64) * delta
        peak = max(delta, 0.0)  # mean of e^x, factored as e^peak · mean(e^(x − peak))
        expected = peak + math.log(torch.trapezoid(torch.exp(x - peak), dx=1 / 200_000).item())
        assert log_mean_exp(delta) == pytest.approx(expected, abs=1e-5), delta  # quadrature


def _normalized_run(name: str, *extra: str) -> tuple[list[float], list[float]]:
    assert main(["fit", *NORMALIZED_E1, f"--run_dir=runs/{name}", *extra]) == 0
    cols = read_metrics(f"runs/{name}/metrics.csv")
    return cols["train/log_loss"][1:], cols["log10_time"][1:]


def test_adaptive_loss_normalized_run_follows_gd_on_the_log_time_clock():
    """The adaptive integrator on the flow of log L (clock s, t recovered from dt = ds/L)
    traces the same log L against log10 t as small loss-normalized gd steps, far past
    float64's range; gd's own error at this η is ~0.5% (η = 0.01 against 0.002)."""
    gd_log_loss, gd_log_t = _normalized_run("gd", "--model.lr=0.002", "--trainer.max_steps=4500")
    ad_log_loss, ad_log_t = _normalized_run(
        "ad", "--model.integrator=adaptive", "--model.lr=0.002", "--trainer.max_steps=4500"
    )
    assert min(ad_log_loss) < -745 and max(ad_log_t) > 308
    assert all(b >= a for a, b in zip(ad_log_t, ad_log_t[1:], strict=False))

    def log_t_at(log_loss, log_t, level):  # rows run downhill in log L
        return float(np.interp(-level, [-v for v in log_loss], log_t))

    for level in (-1.0, -5.0, -50.0, -500.0):
        gd, ad = log_t_at(gd_log_loss, gd_log_t, level), log_t_at(ad_log_loss, ad_log_t, level)
        assert ad == pytest.approx(gd, rel=0.02, abs=0.02), level
    assert read_summary("runs/ad")["gradient_evaluations"] > 0


@pytest.mark.parametrize("integrator", ["gd", "adaptive"])
def test_a_time_budget_ends_the_run_completed_even_inside_a_chunk(integrator):
    """trainer.max_time is a configured end, like max_steps: status completed, exit 0. With two
    evaluation points the only chunk is the whole run, so the budget must be checked inside it
    (Lightning's Timer looks between chunks)."""
    args = ["--config", str(QUICKSTART), "--data.d=200", "--trainer.max_steps=3000000"]
    args += ["--model.eval_points=2", f"--model.integrator={integrator}", "--run_dir=runs/budget"]
    start = time.monotonic()
    assert main(["fit", *args, "--trainer.max_time=00:00:00:02"]) == 0
    summary = read_summary("runs/budget")
    assert summary["status"] == "completed" and 0 < summary["steps"] < 3_000_000
    assert summary["time"] < 3_000_000 * 0.01  # short of the horizon (adaptive: its steps are few)
    assert time.monotonic() - start < 30  # the budget, not the steps, ended it
