"""grokkit.models: homogeneity (declared degree against f(cθ) = c^L f(θ)), initialization, and the
forward pass against explicit formulas, for DiagonalNet, MatrixFactorization, TwoLayerReLU,
ModularTransformer and MLP."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import all_pairs

from grokkit.errors import ConfigError
from grokkit.models import (
    MLP,
    DiagonalNet,
    HomogeneousNet,
    MatrixFactorization,
    ModularTransformer,
    TwoLayerReLU,
)
from grokkit.task import GrokTask


def _randomize_(net: torch.nn.Module, seed: int) -> None:
    """Random non-zero parameters of both signs (biases included) instead of the base init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


@torch.no_grad()
def _scaled_output(net: torch.nn.Module, x: torch.Tensor, c: float) -> torch.Tensor:
    """f(c·θ; x) for a copy of the net with every parameter multiplied by c."""
    scaled = copy.deepcopy(net)
    for p in scaled.parameters():
        p.mul_(c)
    return scaled(x)


# ---------------------------------------------------------------- DiagonalNet


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("c", [0.5, 2.0, 3.7, 10.0])
def test_homogeneity(depth, c):
    d = 40
    net = DiagonalNet(d, depth=depth).double()
    assert net.degree == depth
    _randomize_(net, seed=depth)
    x = torch.randn(16, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        f = net(x).clone()
        assert f.abs().max() > 1e-3  # random parameters give a nonzero output
        for p in net.parameters():
            p.mul_(c)
        f_scaled = net(x)
    torch.testing.assert_close(f_scaled, c**depth * f, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_homogeneity_degree_is_exactly_depth(depth):
    # The ratio f(cθ)/f(θ) identifies the degree: log_c of it equals depth, not depth ± 1.
    d = 12
    net = DiagonalNet(d, depth=depth).double()
    _randomize_(net, seed=10 + depth)
    x = torch.randn(5, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    c = 3.0
    with torch.no_grad():
        f = net(x).clone()
        for p in net.parameters():
            p.mul_(c)
        ratio = net(x) / f
    torch.testing.assert_close(
        torch.log(ratio) / math.log(c), torch.full_like(ratio, float(depth)), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_effective_weight_is_u_pow_L_minus_v_pow_L(depth):
    d = 25
    net = DiagonalNet(d, depth=depth).double()
    _randomize_(net, seed=100 + depth)
    u, v = net.u.detach().clone(), net.v.detach().clone()
    expected = u**depth - v**depth
    torch.testing.assert_close(net.effective_weight().detach(), expected, rtol=1e-12, atol=0)
    x = torch.randn(9, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(net(x).detach(), x @ expected, rtol=1e-12, atol=1e-12)


def test_base_init_has_unit_norm_and_zero_output():
    d = 37
    net = DiagonalNet(d, depth=2)
    assert isinstance(net, HomogeneousNet)
    norm = torch.cat([p.detach().flatten() for p in net.parameters()]).norm().item()
    assert norm == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(net.u, net.v)
    assert torch.all(net.effective_weight() == 0)


@pytest.mark.parametrize(
    "kwargs, key", [({"d": 0}, "model.net.d"), ({"d": 3, "depth": 0}, "depth")]
)
def test_bad_net_values_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as info:
        DiagonalNet(**kwargs)
    assert key in str(info.value)


# ---------------------------------------------------------------- homogeneity


def _homogeneous_cases():
    mf = MatrixFactorization(d=6).double()
    relu = TwoLayerReLU(p=7, width=16).double()
    return [("matrix_factorization", mf, all_pairs(6)), ("two_layer_relu", relu, all_pairs(7))]


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
    x = all_pairs(7)
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
    return [(mlp, x_mlp), (transformer, all_pairs(7))]


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
        assert torch.equal(net(all_pairs(d)), torch.zeros(d * d))
    task = GrokTask(net, alpha=alpha, loss="mse")
    torch.testing.assert_close(task.net.u.detach(), alpha * torch.eye(d), rtol=0, atol=0)
    torch.testing.assert_close(task.net.v.detach(), alpha * torch.eye(d), rtol=0, atol=0)
    with torch.no_grad():
        assert torch.equal(task(all_pairs(d)), torch.zeros(d * d))


def test_matrix_factorization_forward_is_the_matrix_entry():
    d = 6
    net = MatrixFactorization(d=d).double()
    _randomize_(net, seed=11)
    u, v = net.u.detach(), net.v.detach()
    w = u @ u.T - v @ v.T
    x = all_pairs(d)[torch.randperm(d * d, generator=torch.Generator().manual_seed(0))]
    expected = torch.stack([w[i, j] for i, j in x.tolist()])
    # evaluation reads a batch of more than d entries off W; training (autograd on) and small
    # batches gather rows: the same entries either way
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(net(x[:d]), expected[:d], rtol=1e-12, atol=1e-12)
    out = net(x)
    torch.testing.assert_close(out.detach(), expected, rtol=1e-12, atol=1e-12)
    out.sum().backward()  # each entry (i, j) sends u_j to row i of ∇_U and u_i to row j
    grad_u = torch.zeros(d, d, dtype=torch.double)
    for i, j in x.tolist():
        grad_u[i] += u[j]
        grad_u[j] += u[i]
    torch.testing.assert_close(net.u.grad, grad_u)
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
    x = all_pairs(p)
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
        assert torch.equal(net(all_pairs(p)), torch.zeros(p * p, p))
    # the init scale keeps the output at zero
    task = GrokTask(net, alpha=10.0, loss="cross_entropy")
    with torch.no_grad():
        assert torch.equal(task(all_pairs(p)), torch.zeros(p * p, p))


def test_two_layer_relu_check_input():
    net = TwoLayerReLU(p=5, width=4)
    net.check_input(all_pairs(5))
    with pytest.raises(ConfigError, match="model.net.p"):
        net.check_input(torch.tensor([[0, 5]]))


# ---------------------------------------------------------------- ModularTransformer


def test_transformer_output_shape_and_check_input():
    p = 7
    torch.manual_seed(0)
    net = ModularTransformer(p=p, d_model=16, heads=2, d_mlp=32)
    x = all_pairs(p)[:10]
    with torch.no_grad():
        out = net(x)
    assert out.shape == (10, p) and torch.isfinite(out).all()
    net.check_input(all_pairs(p))
    for bad in ([[p, 0]], [[0, p]], [[3, 2 * p]]):
        with pytest.raises(ConfigError, match="model.net.p"):
            net.check_input(torch.tensor(bad))
    with pytest.raises(ConfigError, match="model.net.d_model"):
        ModularTransformer(p=p, d_model=10, heads=4)
