"""The empirical NTK against closed forms and naive autograd; kernel alignments; the
NTKAlignment callback in real fits, including resume."""

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SMALL_E1

from grokkit.callbacks.ntk import NTKAlignment
from grokkit.cli import main
from grokkit.data import ModularArithmeticData
from grokkit.errors import ConfigError
from grokkit.models import MLP, DiagonalNet, MatrixFactorization, ModularTransformer, TwoLayerReLU
from grokkit.ntk import (
    centered_alignment,
    empirical_ntk,
    frobenius_cosine,
    jacobian_ntk,
    kernel_angle,
)
from grokkit.rundir import read_metrics
from grokkit.theory.kernel import kernel_predictor

# The quickstart's own callback list is replaced, so that these runs hold exactly one
# NTKAlignment (Lightning refuses two) and nothing else; first the append form of the CLI ...
APPEND = [
    "--trainer.callbacks=[]",
    "--trainer.callbacks+=grokkit.callbacks.ntk.NTKAlignment",
    "--trainer.callbacks.probe_size=64",
]


def only_ntk(**init_args) -> str:
    """... then the whole list as one value."""
    callback = {"class_path": "grokkit.callbacks.ntk.NTKAlignment", "init_args": init_args}
    return f"--trainer.callbacks={json.dumps([callback])}"


COLUMNS = ("ntk/target_alignment", "ntk/init_alignment", "ntk/velocity")


def _randomize_(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """float64 and a random (non-init) parameter point."""
    gen = torch.Generator().manual_seed(seed)
    net.double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net


# ---- the kernel ----


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_diagonal_net_ntk_matches_closed_form(depth):
    # f = <u^L − v^L, x>: ∂f/∂u_k = L u_k^(L−1) x_k, ∂f/∂v_k = −L v_k^(L−1) x_k, so
    # K(x, x') = L² Σ_k (u_k^(2L−2) + v_k^(2L−2)) x_k x'_k  (= 4 Σ (u² + v²) x x' for L = 2)
    net = _randomize_(DiagonalNet(d=9, depth=depth))
    x = torch.randn(6, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u, v = net.u.detach(), net.v.detach()
    weights = depth**2 * (u.pow(2 * depth - 2) + v.pow(2 * depth - 2))
    expected = (x * weights) @ x.T
    k = empirical_ntk(net, x)
    assert k.dtype == torch.float64 and k.shape == (6, 6)
    torch.testing.assert_close(k, expected, rtol=0, atol=1e-10)


def test_matrix_factorization_ntk_matches_hand_derived_gradients():
    # f_ij = Σ_k U_ik U_jk − V_ik V_jk: ∂f_ij/∂U = e_i U_jᵀ + e_j U_iᵀ (rows i and j, twice row i
    # when i = j), ∂f_ij/∂V = −(e_i V_jᵀ + e_j V_iᵀ); K is the Frobenius product of these.
    d = 5
    net = _randomize_(MatrixFactorization(d=d))
    u, v = net.u.detach(), net.v.detach()
    pairs = torch.tensor([[0, 0], [0, 3], [3, 0], [2, 4], [4, 4], [1, 2], [2, 2]])

    def grad_u_v(i: int, j: int) -> torch.Tensor:
        gu, gv = torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
        gu[i] += u[j]
        gu[j] += u[i]
        gv[i] -= v[j]
        gv[j] -= v[i]
        return torch.cat([gu.flatten(), gv.flatten()])

    grads = torch.stack([grad_u_v(int(i), int(j)) for i, j in pairs])
    expected = grads @ grads.T
    k = empirical_ntk(net, pairs)
    torch.testing.assert_close(k, expected, rtol=0, atol=1e-10)
    # the same in closed form: K((i,j),(k,l)) = δ_ik G_jl + δ_il G_jk + δ_jk G_il + δ_jl G_ik,
    # G = UUᵀ + VVᵀ; on the diagonal for i = j: 4 (‖U_i‖² + ‖V_i‖²)
    g = u @ u.T + v @ v.T
    for a, (i, j) in enumerate(pairs.tolist()):
        for b, (m, n) in enumerate(pairs.tolist()):
            closed = (i == m) * g[j, n] + (i == n) * g[j, m] + (j == m) * g[i, n]
            closed = closed + (j == n) * g[i, m]
            assert k[a, b].item() == pytest.approx(closed.item(), abs=1e-10)
    assert k[0, 0].item() == pytest.approx(4 * g[0, 0].item(), abs=1e-10)
    # empirical_ntk took the net's closed form; the Jacobian path agrees with it
    torch.testing.assert_close(jacobian_ntk(net, pairs), net.trace_ntk(pairs), rtol=0, atol=1e-10)


def _naive_trace_ntk(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Σ_c J_c J_cᵀ with one torch.autograd.grad call per (point, output)."""
    params = list(net.parameters())
    rows = []
    for i in range(len(x)):
        out = net(x[i : i + 1])[0]
        per_output = []
        for c in range(out.numel()):
            grads = torch.autograd.grad(out[c], params, retain_graph=True, allow_unused=True)
            flat = [
                (g if g is not None else torch.zeros_like(p)).flatten()
                for g, p in zip(grads, params, strict=True)
            ]
            per_output.append(torch.cat(flat))
        rows.append(torch.stack(per_output))
    jac = torch.stack(rows)  # (n, C, P)
    return sum(jac[:, c] @ jac[:, c].T for c in range(jac.shape[1]))


def _two_layer() -> tuple[torch.nn.Module, torch.Tensor]:
    net = _randomize_(TwoLayerReLU(p=5, width=6), seed=2)
    x = torch.tensor([[0, 1], [2, 2], [4, 0], [3, 1], [1, 4], [0, 0], [2, 3]])
    return net, x


def _mlp() -> tuple[torch.nn.Module, torch.Tensor]:
    net = _randomize_(MLP(in_dim=4, out_dim=3, width=5, depth=3), seed=3)
    return net, torch.randn(6, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


def _transformer() -> tuple[torch.nn.Module, torch.Tensor]:
    net = _randomize_(ModularTransformer(p=5, d_model=8, heads=2, d_mlp=16), seed=4)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.3)
    return net, torch.tensor([[0, 1], [2, 2], [4, 0], [3, 1], [1, 4]])


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # attention under vmap
@pytest.mark.parametrize(
    "make", [_two_layer, _mlp, _transformer], ids=["two_layer_relu", "mlp", "transformer"]
)
def test_trace_ntk_equals_sum_of_naive_per_output_kernels_and_chunking_is_exact(make):
    net, x = make()
    net.train()
    expected = _naive_trace_ntk(net, x)
    for p in net.parameters():
        p.grad = None
    params = sum(p.numel() for p in net.parameters())
    n, outputs = len(x), net(x).shape[1]
    pair_bytes = params * 8
    budgets = {
        "all at once": 2**30,
        "two outputs per chunk": 2 * n * pair_bytes,
        "blocks of two points": 4 * pair_bytes,
        "one point at a time": 1,
    }
    assert outputs > 2
    for name, max_bytes in budgets.items():
        k = jacobian_ntk(net, x, max_bytes=max_bytes)
        torch.testing.assert_close(k, expected, rtol=0, atol=1e-10, msg=name)
    # no gradients or mode changes left behind
    assert all(p.grad is None for p in net.parameters()) and net.training


def test_ntk_of_a_float32_net_is_returned_in_float64():
    net = DiagonalNet(d=50)
    net.scale_init_(3.0)
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    k = empirical_ntk(net, x)
    assert k.dtype == torch.float64 and next(net.parameters()).dtype == torch.float32
    u = net.u.detach().double()
    expected = 4 * (x.double() * (2 * u**2)) @ x.double().T
    torch.testing.assert_close(k, expected, rtol=1e-5, atol=0)  # float32 Jacobians


def test_kernel_predictor_on_a_rank_deficient_ntk_matches_an_exact_float64_solve():
    """W2 = 0: the NTK is the Gram of the hidden features ReLU(W1·x + b1), rank ≤ width = 64 <
    n_train = 212; a Gram with float32 rounding noise in its null space had that noise inverted
    by the min-norm fit (26.8× off, 7% of argmaxes agreeing)."""
    torch.manual_seed(0)
    data = ModularArithmeticData(p=23, train_fraction=0.4, seed=0).build()
    (x_train, y_train), (x_test, _) = data["train"], data["test"]
    net = TwoLayerReLU(p=23, width=64, zero_last_layer=True)
    net.scale_init_(10.0)
    exact_net = copy.deepcopy(net).double()
    x_all = torch.cat([x_train, x_test])
    n = len(y_train)
    k = empirical_ntk(net, x_all).numpy()
    k_exact = empirical_ntk(exact_net, x_all).numpy()
    eigenvalues = np.linalg.eigvalsh(k_exact[:n, :n])
    assert (eigenvalues > 1e-10 * eigenvalues.max()).sum() < n  # rank-deficient indeed
    scores = kernel_predictor(k[:n, :n], y_train.numpy(), k[n:, :n], "multiclass")
    exact = kernel_predictor(k_exact[:n, :n], y_train.numpy(), k_exact[n:, :n], "multiclass")
    assert np.linalg.norm(scores - exact) <= 1e-6 * np.linalg.norm(exact)
    assert (scores.argmax(1) == exact.argmax(1)).mean() == 1.0


@pytest.mark.parametrize("zero_last_layer", [False, True])
def test_two_layer_relu_closed_form_ntk_equals_the_jacobian_path(zero_last_layer):
    """Every kernel term (∂f/∂W2, ∂f/∂W1 with shared operands, ∂f/∂b1), with repeated and
    distinct operands, inactive units (large α spreads the pre-activations) and both inits;
    empirical_ntk picks the closed form for this net."""
    torch.manual_seed(0)
    net = TwoLayerReLU(p=13, width=48, zero_last_layer=zero_last_layer)
    net.scale_init_(7.0)
    if zero_last_layer:  # a trained W2: the W1/b1 terms are zero at W2 = 0
        with torch.no_grad():
            net.w2.normal_()
    x = torch.cat([torch.randint(0, 13, (30, 2)), torch.tensor([[3, 4], [3, 9], [8, 4]])])
    expected = jacobian_ntk(net, x)
    closed = net.trace_ntk(x)
    assert closed.dtype == torch.float64
    assert ((closed - expected).norm() / expected.norm()).item() <= 1e-6
    torch.testing.assert_close(empirical_ntk(net, x), closed, rtol=0, atol=0)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_mlp_closed_form_ntk_equals_the_jacobian_path(depth):
    """Every layer's weight and bias terms, through ReLU masks with inactive units (α = 3
    spreads the pre-activations); empirical_ntk picks the closed form for this net."""
    torch.manual_seed(0)
    net = MLP(in_dim=7, out_dim=4, width=9, depth=depth)
    net.scale_init_(3.0)
    x = torch.randn(25, 7)
    expected = jacobian_ntk(net, x)
    closed = net.trace_ntk(x)
    assert closed.dtype == torch.float64
    assert ((closed - expected).norm() / expected.norm()).item() <= 1e-6
    torch.testing.assert_close(empirical_ntk(net, x), closed, rtol=0, atol=0)


# ---- alignments ----


def _random_psd(n: int, seed: int) -> torch.Tensor:
    a = torch.randn(n, n + 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T


def test_centered_alignment_properties():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(10, generator=gen, dtype=torch.float64)
    assert centered_alignment(torch.outer(y, y), y) == pytest.approx(1.0, abs=1e-12)
    labels = torch.tensor([1.0, -1, -1, 1, 1, -1, 1, 1, -1, 1], dtype=torch.float64)
    assert centered_alignment(torch.outer(labels, labels) + 7.0, labels) == pytest.approx(1.0)
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1, 0, 2, 2, 0, 1, 0])).double()
    assert centered_alignment(onehot @ onehot.T, onehot) == pytest.approx(1.0, abs=1e-12)

    k = _random_psd(10, seed=1)
    a = centered_alignment(k, labels)
    assert -1 < a < 1 and abs(a) < 0.9  # a random kernel is far from the labels
    assert centered_alignment(3.7 * k, labels) == pytest.approx(a, abs=1e-12)
    assert centered_alignment(k + 5.0, labels) == pytest.approx(a, abs=1e-12)
    assert centered_alignment(k, 2.5 * labels) == pytest.approx(a, abs=1e-12)
    # the uncentered cosine is not invariant to a constant shift; the centered alignment is
    assert frobenius_cosine(k + 5.0, torch.outer(labels, labels)) != pytest.approx(
        frobenius_cosine(k, torch.outer(labels, labels)), abs=1e-3
    )
    with pytest.raises(ValueError, match="one-hot"):
        centered_alignment(k, torch.arange(10))


def test_frobenius_cosine_and_kernel_angle():
    k1, k2 = _random_psd(8, seed=2), _random_psd(8, seed=3)
    assert frobenius_cosine(k1, k1) == pytest.approx(1.0, abs=1e-15)
    assert frobenius_cosine(k1, 4.0 * k1) == pytest.approx(1.0, abs=1e-15)
    cos = frobenius_cosine(k1, k2)
    assert 0 < cos < 1  # two PSD kernels: non-negative inner product
    assert kernel_angle(k1, k2) == pytest.approx(math.acos(cos), rel=1e-10)
    assert kernel_angle(k1, 2.0 * k1) == pytest.approx(0.0, abs=1e-15)
    # stable for nearly equal kernels, where acos(1 − ε) has lost the digits
    e = 1e-9 * _random_psd(8, seed=4)
    assert 0 < kernel_angle(k1, k1 + e) < 1e-8
    assert math.isnan(frobenius_cosine(k1, torch.zeros(8, 8)))


# ---- the callback, fed by hand ----


def _feed(callback: NTKAlignment, net: torch.nn.Module, batch, times, max_steps):
    trainer = SimpleNamespace(max_steps=max_steps)
    task = SimpleNamespace(net=net, diverged=False)
    rows = []
    for step, t in times:
        row = {"step": step, "time": t}
        task.at_end = step >= max_steps  # as GrokTask.at_end: the run's last row
        callback.on_evaluation(trainer, task, batch, row)
        rows.append(row)
    return rows


def _diagonal_batch(n: int = 20, d: int = 30):
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, 2, (n, d), generator=gen).double() * 2 - 1
    y = torch.sign(x[:, :3].sum(1))
    return {"train": (x, y), "test": (x, y)}


def test_callback_cadence_probe_and_state_round_trip():
    net = DiagonalNet(d=30).double()
    net.scale_init_(4.0)
    batch = _diagonal_batch()
    cb = NTKAlignment(probe_size=50, every=3)
    times = [(s, 0.1 * s) for s in (0, 1, 2, 3, 5, 8, 13, 21)]
    rows = _feed(cb, net, batch, times, max_steps=21)
    computed = [r["step"] for r in rows if "ntk/init_alignment" in r]
    assert computed == [0, 3, 13, 21]  # evaluations 0, 3, 6 and the last one
    assert all(set(r) == {"step", "time"} for r in rows if r["step"] not in computed)
    assert "ntk/velocity" not in rows[0] and all(
        "ntk/velocity" in r for r in rows if r["step"] in computed[1:]
    )
    assert rows[0]["ntk/init_alignment"] == pytest.approx(1.0, abs=1e-15)
    assert cb.probe.tolist() == list(range(20))  # at most the whole training set
    # the kernel does not move when the parameters do not: zero velocity, alignment 1
    assert [rows[i]["ntk/velocity"] for i in (3, 6, 7)] == [0.0, 0.0, 0.0]
    assert [rows[i]["ntk/init_alignment"] for i in (3, 6, 7)] == pytest.approx([1.0] * 3)

    state = cb.state_dict()
    fresh = NTKAlignment(probe_size=50, every=3)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.k0, cb.k0) and torch.equal(fresh.probe, cb.probe)
    assert fresh.evaluations == 8 and fresh.previous_time == pytest.approx(2.1)
    with torch.no_grad():
        net.u[:10].mul_(1.5)  # a changed kernel: compared with the restored K0, not recomputed
    (row,) = _feed(fresh, net, batch, [(30, 3.0)], max_steps=30)
    assert row["ntk/init_alignment"] < 1 - 1e-6
    assert row["ntk/velocity"] == pytest.approx(kernel_angle(cb.previous, fresh.previous) / 0.9)


def test_callback_targets_one_hot_for_class_indices():
    net, x = _two_layer()
    y = torch.tensor([1, 4, 4, 4, 0, 0, 0])  # (a + b) mod 5
    cb = NTKAlignment(probe_size=7)
    (row,) = _feed(cb, net, {"train": (x, y)}, [(0, 0.0)], max_steps=10)
    onehot = torch.nn.functional.one_hot(y).double()
    expected = centered_alignment(empirical_ntk(net, x), onehot)
    assert row["ntk/target_alignment"] == pytest.approx(expected, abs=1e-12)


def test_bad_callback_argument_on_the_command_line_is_one_line(capsys):
    assert (
        main(["fit", *SMALL_E1, "--trainer.max_steps=10", *APPEND, "--trainer.callbacks.every=0"])
        == 2
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "NTKAlignment.every must be >= 1, got 0" in err[0]
    assert not Path("runs").exists()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"probe_size": 0}, "NTKAlignment.probe_size"),
        ({"every": 0}, "NTKAlignment.every"),
        ({"max_bytes": 0}, "NTKAlignment.max_bytes"),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        NTKAlignment(**kwargs)


# ---- the callback in real fits ----


def test_fit_with_callback_logs_alignment_columns():
    assert main(["fit", *SMALL_E1, "--trainer.max_steps=300", "--run_dir=runs/x", *APPEND]) == 0
    m = read_metrics(Path("runs/x/metrics.csv"))
    assert all(c in m for c in COLUMNS)
    computed = [i for i, v in enumerate(m["ntk/init_alignment"]) if not math.isnan(v)]
    assert computed[0] == 0 and m["step"][0] == 0 and computed[-1] == len(m["step"]) - 1
    assert len(computed) >= 10 and len(computed) < len(m["step"])  # every 5th point, + last
    init = [m["ntk/init_alignment"][i] for i in computed]
    target = [m["ntk/target_alignment"][i] for i in computed]
    velocity = [m["ntk/velocity"][i] for i in computed[1:]]
    assert init[0] == pytest.approx(1.0, abs=1e-12)
    assert all(-1 <= a <= 1 + 1e-12 for a in init + target)
    assert all(math.isfinite(v) and v >= 0 for v in velocity)
    assert math.isnan(m["ntk/velocity"][0])


def test_kernel_stays_put_in_the_kernel_regime_then_moves():
    """Small E1 (α = 128): measured, the kernel keeps init alignment ≥ 0.9996 while the test
    accuracy sits near chance (≤ 0.63, up to t ≈ 245), then turns at the transition (0.85 at
    the grokking step, 0.25 at step 1500), the target alignment rises 0.133 → 0.585, and the
    kernel's velocity peaks at the grokking step (783)."""
    args = ["fit", *SMALL_E1, "--trainer.max_steps=1500", "--run_dir=runs/e1"]
    assert main([*args, only_ntk(probe_size=64, every=2)]) == 0
    m = read_metrics(Path("runs/e1/metrics.csv"))
    grokked = json.loads(Path("runs/e1/summary.json").read_text())["grokking_step"]
    assert grokked is not None
    rows = [
        {key: m[key][i] for key in m}
        for i in range(len(m["step"]))
        if not math.isnan(m["ntk/init_alignment"][i])
    ]
    plateau = [r for r in rows if r["test/acc"] < 0.65]
    assert len(plateau) > 30 and plateau[-1]["time"] > 100
    assert min(r["ntk/init_alignment"] for r in plateau) > 0.999  # kernel regime
    assert max(r["ntk/velocity"] for r in plateau[1:]) < 1e-3
    assert rows[-1]["ntk/init_alignment"] < 0.5  # rich regime: a different kernel
    assert rows[-1]["ntk/target_alignment"] > 3 * rows[0]["ntk/target_alignment"]
    fastest = max(rows[1:], key=lambda r: r["ntk/velocity"])
    assert grokked / 2 <= fastest["step"] <= 2 * grokked


def test_resume_restores_the_initial_kernel():
    ntk = [only_ntk(probe_size=64, every=1)]
    assert main(["fit", *SMALL_E1, *ntk, "--trainer.max_steps=300", "--run_dir=runs/a"]) == 0
    assert main(["fit", *SMALL_E1, *ntk, "--trainer.max_steps=150", "--run_dir=runs/b"]) == 0
    resume = [
        "fit",
        "--config",
        "runs/b/config.yaml",
        "--trainer.max_steps=300",
        "--ckpt_path=runs/b/checkpoints/last.ckpt",
    ]
    assert main(resume) == 0
    straight, resumed = (
        read_metrics(Path("runs/a/metrics.csv")),
        read_metrics(Path("runs/b/metrics.csv")),
    )
    # after the resume both runs evaluate at the same steps (the 300-step schedule)
    after = {
        s: a
        for s, a in zip(straight["step"], straight["ntk/init_alignment"], strict=True)
        if s > 150
    }
    resumed_after = {
        s: a for s, a in zip(resumed["step"], resumed["ntk/init_alignment"], strict=True) if s > 150
    }
    assert sorted(resumed_after) == sorted(after) and len(after) >= 5
    for step, value in after.items():
        assert resumed_after[step] == pytest.approx(value, rel=1e-12, abs=0)
    # the checkpoints hold the same K0, taken at step 0, and the probe
    states = [
        torch.load(f"runs/{r}/checkpoints/last.ckpt", weights_only=False)["callbacks"] for r in "ab"
    ]
    a, b = (s["NTKAlignment"] for s in states)
    assert a["k0_step"] == b["k0_step"] == 0 and a["k0"].shape == (64, 64)
    assert torch.equal(a["k0"], b["k0"]) and torch.equal(a["probe"], b["probe"])
    assert torch.equal(a["previous"], b["previous"]) and a["previous_time"] == b["previous_time"]
