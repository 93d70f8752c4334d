"""Nets of experiments E2-E5 (homogeneity, initialization, forward against explicit formulas), the
objectives' stable log-losses, and GrokTask's loss-normalized and minibatch steps."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from grokkit.errors import ConfigError
from grokkit.models import MLP, DiagonalNet, MatrixFactorization, ModularTransformer, TwoLayerReLU
from grokkit.objectives import OBJECTIVES, mse_onehot_loss
from grokkit.task import GrokTask


def _randomize_(net: torch.nn.Module, seed: int) -> None:
    """Random non-zero parameters of both signs (biases included) instead of the base init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _all_pairs(p: int) -> torch.Tensor:
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return torch.stack([a.flatten(), b.flatten()], dim=1)


@torch.no_grad()
def _scaled_output(net: torch.nn.Module, x: torch.Tensor, c: float) -> torch.Tensor:
    """f(c·θ; x) for a copy of the net with every parameter multiplied by c."""
    scaled = copy.deepcopy(net)
    for p in scaled.parameters():
        p.mul_(c)
    return scaled(x)


# ---------------------------------------------------------------- homogeneity


def _homogeneous_cases():
    mf = MatrixFactorization(d=6).double()
    relu = TwoLayerReLU(p=7, width=16).double()
    return [("matrix_factorization", mf, _all_pairs(6)), ("two_layer_relu", relu, _all_pairs(7))]


@pytest.mark.parametrize("case", [0, 1], ids=["matrix_factorization", "two_layer_relu"])
def test_homogeneous_nets_scale_as_declared_degree(case):
    _, net, x = _homogeneous_cases()[case]
    _randomize_(net, seed=case)
    if isinstance(net, TwoLayerReLU):
        assert net.b1.abs().min() > 0  # the bias is part of θ and is scaled too
    with torch.no_grad():
        f = net(x)
    assert f.abs().max() > 1e-3
    assert net.degree == 2
    for c in (0.3, 2.0, 3.7, 10.0):
        f_c = _scaled_output(net, x, c)
        torch.testing.assert_close(f_c, c**2 * f, rtol=1e-10, atol=1e-10)
        measured = math.log(f_c.norm().item() / f.norm().item()) / math.log(c)
        assert measured == pytest.approx(net.degree, abs=1e-9)


def test_two_layer_relu_without_scaling_the_bias_is_not_homogeneous():
    # control: the check above must depend on b1 (scaling only the weights breaks homogeneity)
    net = TwoLayerReLU(p=7, width=16).double()
    _randomize_(net, seed=3)
    x = _all_pairs(7)
    with torch.no_grad():
        f = net(x)
        scaled = copy.deepcopy(net)
        scaled.w1.mul_(2.0)
        scaled.w2.mul_(2.0)
        assert not torch.allclose(scaled(x), 4.0 * f, rtol=1e-6, atol=1e-6)


def _non_homogeneous_cases():
    torch.manual_seed(0)
    mlp = MLP(in_dim=5, out_dim=3, width=8, depth=3).double()
    transformer = ModularTransformer(p=7, d_model=8, heads=2, d_mlp=16).double()
    x_mlp = torch.randn(20, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return [(mlp, x_mlp), (transformer, _all_pairs(7))]


@pytest.mark.parametrize("case", [0, 1], ids=["mlp", "transformer"])
def test_non_homogeneous_nets_declare_none_and_are_not_homogeneous(case):
    net, x = _non_homogeneous_cases()[case]
    assert net.degree is None
    with torch.no_grad():
        f = net(x)
    assert f.abs().max() > 1e-6
    for c in (0.5, 2.0, 3.0):
        f_c = _scaled_output(net, x, c)
        for k in (1, 2, 3):
            gap = (f_c - c**k * f).abs().max().item()
            assert gap > 1e-3 * max(f_c.abs().max().item(), c**k * f.abs().max().item()), (c, k)


# ---------------------------------------------------------------- MatrixFactorization


def test_matrix_factorization_init_is_identity_and_alpha_scales_it():
    d, alpha = 5, 3.5
    net = MatrixFactorization(d=d, init_noise=0.0)
    assert torch.equal(net.u.detach(), torch.eye(d)) and torch.equal(net.v.detach(), torch.eye(d))
    assert torch.equal(net.matrix().detach(), torch.zeros(d, d))
    with torch.no_grad():
        assert torch.equal(net(_all_pairs(d)), torch.zeros(d * d))
    task = GrokTask(net, alpha=alpha, loss="mse")
    torch.testing.assert_close(task.net.u.detach(), alpha * torch.eye(d), rtol=0, atol=0)
    torch.testing.assert_close(task.net.v.detach(), alpha * torch.eye(d), rtol=0, atol=0)
    with torch.no_grad():
        assert torch.equal(task(_all_pairs(d)), torch.zeros(d * d))


def test_matrix_factorization_forward_is_the_matrix_entry():
    d = 6
    net = MatrixFactorization(d=d).double()
    _randomize_(net, seed=11)
    u, v = net.u.detach(), net.v.detach()
    w = u @ u.T - v @ v.T
    x = _all_pairs(d)[torch.randperm(d * d, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        out = net(x)
    expected = torch.stack([w[i, j] for i, j in x.tolist()])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net.matrix().detach(), w)


def test_matrix_factorization_noise_breaks_symmetry_and_keeps_scale():
    d, sigma, alpha = 64, 0.01, 10.0
    torch.manual_seed(0)
    net = MatrixFactorization(d=d, init_noise=sigma)
    base_u, base_v = net.u.detach().clone(), net.v.detach().clone()
    assert not torch.equal(base_u, base_v)
    for base in (base_u, base_v):
        noise = base - torch.eye(d)
        assert noise.std().item() == pytest.approx(sigma, rel=0.1)
        assert noise.abs().max().item() < 10 * sigma  # still I + small noise
    task = GrokTask(net, alpha=alpha, loss="mse")
    torch.testing.assert_close(task.net.u.detach(), alpha * base_u)
    torch.testing.assert_close(task.net.v.detach(), alpha * base_v)
    w = task.net.matrix().detach()
    assert 0 < w.abs().max().item() < 0.1 * alpha**2  # no longer exactly 0, still small
    with pytest.raises(ConfigError, match="model.net.init_noise"):
        MatrixFactorization(d=3, init_noise=-0.1)


# ---------------------------------------------------------------- TwoLayerReLU


def test_two_layer_relu_forward_equals_one_hot_computation():
    p, width = 7, 32
    net = TwoLayerReLU(p=p, width=width).double()
    _randomize_(net, seed=5)
    x = _all_pairs(p)
    onehot = torch.cat([F.one_hot(x[:, 0], p), F.one_hot(x[:, 1], p)], dim=1).double()
    assert onehot.shape == (p * p, 2 * p)
    w1, b1, w2 = net.w1.detach(), net.b1.detach(), net.w2.detach()
    expected = torch.relu(onehot @ w1 + b1) @ w2
    with torch.no_grad():
        out = net(x)
    assert out.shape == (p * p, p)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_two_layer_relu_he_init_statistics():
    p, width = 97, 1024
    torch.manual_seed(0)
    net = TwoLayerReLU(p=p, width=width)
    assert net.w1.shape == (2 * p, width) and net.w2.shape == (width, p)
    assert net.w1.std().item() == pytest.approx(math.sqrt(1 / p), rel=0.1)  # sqrt(2 / 2p)
    assert net.w2.std().item() == pytest.approx(1 / math.sqrt(width), rel=0.1)
    assert abs(net.w1.mean().item()) < 0.1 * math.sqrt(1 / p)
    assert torch.equal(net.b1.detach(), torch.zeros(width))


def test_two_layer_relu_zero_last_layer():
    p = 11
    torch.manual_seed(1)
    net = TwoLayerReLU(p=p, width=64, zero_last_layer=True)
    assert torch.equal(net.w2.detach(), torch.zeros(64, p))
    assert torch.equal(net.b1.detach(), torch.zeros(64))
    assert net.w1.std().item() > 0  # the first layer is still random
    with torch.no_grad():
        assert torch.equal(net(_all_pairs(p)), torch.zeros(p * p, p))
    # the init scale keeps the output at zero
    task = GrokTask(net, alpha=10.0, loss="cross_entropy")
    with torch.no_grad():
        assert torch.equal(task(_all_pairs(p)), torch.zeros(p * p, p))


def test_two_layer_relu_check_input():
    net = TwoLayerReLU(p=5, width=4)
    net.check_input(_all_pairs(5))
    with pytest.raises(ConfigError, match="model.net.p"):
        net.check_input(torch.tensor([[0, 5]]))


# ---------------------------------------------------------------- ModularTransformer


def test_transformer_output_shape_and_check_input():
    p = 7
    torch.manual_seed(0)
    net = ModularTransformer(p=p, d_model=16, heads=2, d_mlp=32)
    x = _all_pairs(p)[:10]
    with torch.no_grad():
        out = net(x)
    assert out.shape == (10, p) and torch.isfinite(out).all()
    net.check_input(_all_pairs(p))
    for bad in ([[p, 0]], [[0, p]], [[3, 2 * p]]):
        with pytest.raises(ConfigError, match="model.net.p"):
            net.check_input(torch.tensor(bad))
    with pytest.raises(ConfigError, match="model.net.d_model"):
        ModularTransformer(p=p, d_model=10, heads=4)


# ---------------------------------------------------------------- objectives


def _objective_inputs(name: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n, classes = 32, 5
    if name == "logistic":
        return torch.randn(n, generator=gen), torch.randint(0, 2, (n,), generator=gen) * 2.0 - 1
    if name == "mse":
        return torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    return torch.randn(n, classes, generator=gen), torch.randint(0, classes, (n,), generator=gen)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_log_loss_is_log_of_loss(name):
    objective = OBJECTIVES[name]
    for seed in range(3):
        out, y = _objective_inputs(name, seed)
        log_loss = objective.log_loss(out, y)
        assert log_loss.dtype == torch.float64 and log_loss.dim() == 0
        expected = math.log(objective.loss(out.double(), y).item())
        assert log_loss.item() == pytest.approx(expected, rel=1e-9)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def test_log_cross_entropy_for_confident_predictions():
    n, classes = 16, 7
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=gen)
    logits = torch.randn(n, classes, generator=gen)
    rows = torch.arange(n)
    logits[rows, y] = logits.max(dim=1).values + 1.0 + torch.rand(n, generator=gen)
    out = 1000.0 * logits  # every margin >= 1000
    assert OBJECTIVES["cross_entropy"].loss(out, y).item() == 0.0  # float32 underflows
    got = OBJECTIVES["cross_entropy"].log_loss(out, y).item()
    assert math.isfinite(got)
    # analytic: loss_i = log(1 + Σ_{j≠y} e^{f_j − f_y}) ≈ e^{s_i}, s_i = logsumexp_{j≠y}(f_j − f_y)
    f = out.double().tolist()
    s = [
        _logsumexp([f[i][j] - f[i][int(y[i])] for j in range(classes) if j != int(y[i])])
        for i in range(n)
    ]
    expected = _logsumexp(s) - math.log(n)
    assert got == pytest.approx(expected, rel=1e-9)
    # dominated by the smallest margin
    margins = [
        f[i][int(y[i])] - max(v for j, v in enumerate(f[i]) if j != int(y[i])) for i in range(n)
    ]
    m = min(margins)
    assert -m - math.log(n) <= got <= -m + math.log(classes - 1)


def test_log_logistic_for_confident_predictions():
    n = 20
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (n,), generator=gen) * 2.0 - 1
    out = y * 1000.0 * (1.0 + torch.rand(n, generator=gen))  # margins in [1000, 2000]
    assert OBJECTIVES["logistic"].loss(out, y).item() == 0.0
    got = OBJECTIVES["logistic"].log_loss(out, y).item()
    assert math.isfinite(got)
    margins = (y * out).double().tolist()
    expected = _logsumexp([-m for m in margins]) - math.log(n)  # softplus(−m) ≈ e^{−m}
    assert got == pytest.approx(expected, rel=1e-9)
    assert -min(margins) - math.log(n) <= got <= -min(margins)


def test_log_mse_for_tiny_residuals():
    gen = torch.Generator().manual_seed(2)
    n, classes = 10, 4
    # regression: residuals ~1e-30, whose squares underflow in float32
    out = 1e-30 * (1.0 + torch.rand(n, generator=gen))
    target = torch.zeros(n)
    assert OBJECTIVES["mse"].loss(out, target).item() == 0.0
    expected = math.log(math.fsum(v**2 for v in out.double().tolist()) / n)
    assert OBJECTIVES["mse"].log_loss(out, target).item() == pytest.approx(expected, rel=1e-9)
    # one-hot regression: exact 1 on the target class, ~1e-30 elsewhere
    y = torch.randint(0, classes, (n,), generator=gen)
    out = 1e-30 * (1.0 + torch.rand(n, classes, generator=gen))
    out[torch.arange(n), y] = 1.0
    assert OBJECTIVES["mse_onehot"].loss(out, y).item() == 0.0
    rows = out.double().tolist()
    squares = [rows[i][j] ** 2 for i in range(n) for j in range(classes) if j != int(y[i])]
    expected = math.log(math.fsum(squares) / (n * classes))
    assert OBJECTIVES["mse_onehot"].log_loss(out, y).item() == pytest.approx(expected, rel=1e-9)


def test_mse_onehot_is_mean_over_samples_and_classes():
    out, y = _objective_inputs("mse_onehot", seed=4)
    n, classes = out.shape
    rows = out.double().tolist()
    total = math.fsum(
        (rows[i][j] - (1.0 if j == int(y[i]) else 0.0)) ** 2
        for i in range(n)
        for j in range(classes)
    )
    assert mse_onehot_loss(out.double(), y).item() == pytest.approx(
        total / (n * classes), rel=1e-12
    )


# ---------------------------------------------------------------- GrokTask: step variants


def _tiny_problem(p: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = _all_pairs(p)
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


@pytest.mark.parametrize(("bad", "key"), [({"batch_size": 0}, "model.batch_size")])
def test_bad_batch_size_raises_config_error(bad, key):
    with pytest.raises(ConfigError, match=key):
        GrokTask(DiagonalNet(4), **bad)
