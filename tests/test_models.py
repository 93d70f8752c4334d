"""DiagonalNet: homogeneity, the α-scaled initialization, the effective linear predictor."""

import math

import pytest
import torch

from grokkit.errors import ConfigError
from grokkit.models import DiagonalNet, HomogeneousNet
from grokkit.task import GrokTask


def _randomize_(net: DiagonalNet, seed: int) -> None:
    """Replace the (symmetric, zero-output) base init by random parameters of both signs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _pm1(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n, d), generator=gen) * 2 - 1).to(dtype)


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


@pytest.mark.parametrize(
    "kwargs, key", [({"d": 0}, "model.net.d"), ({"d": 3, "depth": 0}, "depth")]
)
def test_bad_net_values_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as info:
        DiagonalNet(**kwargs)
    assert key in str(info.value)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_bad_alpha_raises_config_error(alpha):
    with pytest.raises(ConfigError) as info:
        GrokTask(DiagonalNet(3), alpha=alpha)
    assert "model.alpha" in str(info.value)
