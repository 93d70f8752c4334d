"""grokkit.objectives: losses and accuracies against plain-Python formulas, and the stable
log-losses for predictions so confident that the loss itself underflows."""

import math

import pytest
import torch

from grokkit.objectives import (
    OBJECTIVES,
    binary_accuracy,
    logistic_loss,
    mse_loss,
    mse_onehot_loss,
    multiclass_accuracy,
)


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


def test_objective_table():
    assert OBJECTIVES["logistic"].accuracy is binary_accuracy
    assert OBJECTIVES["cross_entropy"].accuracy is multiclass_accuracy
    assert OBJECTIVES["mse"].accuracy is None


# ---------------------------------------------------------------- log-losses


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
