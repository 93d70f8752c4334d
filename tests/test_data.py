"""grokkit.data: the data modules of experiments E1-E5 and Omnigrok. Labelling rules checked
against independent plain-Python computations, exact train/test partitions, shapes, loaders,
determinism, config errors."""

import math

import pytest
import torch

from grokkit.data import (
    DigitsData,
    GaussianSeparatedData,
    MatrixCompletionData,
    ModularArithmeticData,
    SparseLinearData,
)
from grokkit.data.modular import is_prime
from grokkit.errors import ConfigError


def _built(cls, **kwargs):
    dm = cls(**kwargs)
    dm.setup("fit")
    return dm


def _assert_same_splits(a, b) -> None:
    for split in ("train", "test"):
        for ta, tb in zip(a.splits[split], b.splits[split], strict=True):
            assert torch.equal(ta, tb), split


def _assert_global_rng_untouched(build) -> None:
    """Building the data must neither depend on nor consume torch's global generator."""
    torch.manual_seed(42)
    expected = torch.rand(4)
    torch.manual_seed(42)
    build()
    assert torch.equal(torch.rand(4), expected)


def _pairs(x: torch.Tensor) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in x.tolist()]


# ---------------------------------------------------------------- E1: SparseLinearData

SMALL = {"d": 50, "k": 3, "n_train": 40, "n_test": 300}


def test_same_seed_gives_identical_tensors():
    a = _built(SparseLinearData, **SMALL, seed=7)
    b = _built(SparseLinearData, **SMALL, seed=7)
    for split in ("train", "test"):
        for ta, tb in zip(a.splits[split], b.splits[split], strict=True):
            assert torch.equal(ta, tb)
    assert torch.equal(a.w_star, b.w_star)


def test_different_seed_gives_different_data():
    a = _built(SparseLinearData, **SMALL, seed=0)
    b = _built(SparseLinearData, **SMALL, seed=1)
    assert not torch.equal(a.splits["train"][0], b.splits["train"][0])
    assert not torch.equal(a.splits["test"][0], b.splits["test"][0])


def test_data_is_independent_of_torch_global_seed():
    torch.manual_seed(123)
    a = _built(SparseLinearData, **SMALL, seed=5)
    torch.manual_seed(987654)
    b = _built(SparseLinearData, **SMALL, seed=5)
    for split in ("train", "test"):
        for ta, tb in zip(a.splits[split], b.splits[split], strict=True):
            assert torch.equal(ta, tb)
    # Building the data must not consume the global generator either: the model init that
    # follows would otherwise depend on the data configuration.
    torch.manual_seed(42)
    expected = torch.rand(4)
    torch.manual_seed(42)
    _built(SparseLinearData, **SMALL, seed=9)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_labels_follow_sparse_ground_truth(seed, k):
    d = 30
    dm = _built(SparseLinearData, d=d, k=k, n_train=64, n_test=200, seed=seed)
    w = dm.w_star
    assert w.shape == (d,)
    # exactly k nonzero entries, all ±1, and they are the first k coordinates
    assert torch.all((w[:k] == 1) | (w[:k] == -1))
    assert torch.count_nonzero(w[k:]) == 0
    assert torch.count_nonzero(w) == k
    for split in ("train", "test"):
        x, y = dm.splits[split]
        assert torch.all((x == 1) | (x == -1))
        # recompute the labels from the first k coordinates alone
        expected = torch.sign(x[:, :k] @ w[:k])
        assert torch.equal(y, expected)
        assert torch.all((y == 1) | (y == -1)), "no zero (tie) labels when k is odd"


def test_shapes_and_dtypes():
    dm = _built(SparseLinearData, d=17, k=5, n_train=11, n_test=23, seed=0)
    x_tr, y_tr = dm.splits["train"]
    x_te, y_te = dm.splits["test"]
    assert x_tr.shape == (11, 17) and y_tr.shape == (11,)
    assert x_te.shape == (23, 17) and y_te.shape == (23,)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.float32


def test_inputs_are_roughly_uniform_and_labels_balanced():
    # x uniform on the hypercube and y = sign of a symmetric sum: both classes about half.
    dm = _built(SparseLinearData, d=200, k=3, n_train=16, n_test=4000, seed=3)
    x, y = dm.splits["test"]
    assert abs(x.mean().item()) < 0.02
    assert 0.4 < (y == 1).float().mean().item() < 0.6


def test_train_and_test_are_different_samples():
    dm = _built(SparseLinearData, **SMALL, seed=0)
    x_tr = dm.splits["train"][0]
    x_te = dm.splits["test"][0]
    assert not torch.equal(x_tr, x_te[: x_tr.shape[0]])


def test_setup_builds_once():
    dm = _built(SparseLinearData, **SMALL, seed=0)
    x_before = dm.splits["train"][0]
    dm.setup("validate")
    assert dm.splits["train"][0] is x_before


def test_loaders_yield_the_full_splits():
    dm = _built(SparseLinearData, **SMALL, seed=0)
    train_iter = iter(dm.train_dataloader())
    first, second = next(train_iter), next(train_iter)  # endless
    assert set(first) == {"train", "test"}
    assert first["train"][0] is dm.splits["train"][0] and second["test"][1] is dm.splits["test"][1]
    val = list(dm.val_dataloader())
    assert len(val) == 1 and len(dm.val_dataloader()) == 1
    with pytest.raises(TypeError):
        len(dm.train_dataloader())


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"d": 10, "k": 2}, "data.k"),
        ({"d": 10, "k": 4}, "data.k"),
        ({"d": 10, "k": 11}, "data.k"),
        ({"d": 3, "k": 5}, "data.k"),
        ({"d": 10, "k": 0}, "data.k"),
        ({"d": 10, "k": 3, "n_train": 0}, "data.n_train"),
        ({"d": 10, "k": 3, "n_train": -5}, "data.n_train"),
        ({"d": 10, "k": 3, "n_test": 0}, "data.n_test"),
        ({"d": 0, "k": 1}, "data.d"),
        ({"d": -1, "k": 1}, "data.d"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as info:
        SparseLinearData(**kwargs)
    assert key in str(info.value)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        SparseLinearData(d=10, k=2)


# ---------------------------------------------------------------- E2: GaussianSeparatedData

GAUSS = {"d": 40, "gamma": 3.0, "n_train": 32, "n_test": 2000}


def test_gaussian_shapes_and_unit_w_star():
    dm = _built(GaussianSeparatedData, **GAUSS, seed=0)
    assert dm.w_star.shape == (40,)
    assert dm.w_star.norm().item() == pytest.approx(1.0, abs=1e-6)
    for split, n in (("train", 32), ("test", 2000)):
        x, y = dm.splits[split]
        assert x.shape == (n, 40) and y.shape == (n,)
        assert x.is_floating_point() and y.is_floating_point()
        assert set(y.unique().tolist()) == {-1.0, 1.0}


def test_gaussian_margin_rule_and_label_is_sign_of_latent_z():
    gamma = GAUSS["gamma"]
    dm = _built(GaussianSeparatedData, **GAUSS, seed=3)
    w = dm.w_star.double()
    for split in ("train", "test"):
        x, y = dm.splits[split]
        x, y = x.double(), y.double()
        projection = y * (x @ w)
        # every point has margin >= gamma/2 along w* (float32 storage: tiny rounding slack)
        assert projection.min().item() >= gamma / 2 - 1e-5
        # z = x - y*(gamma/2)*w* recovers the Gaussian draw whose sign along w* is the label
        z = x - torch.outer(y, w) * (gamma / 2)
        assert torch.all(torch.sign(z @ w) * y >= 0)
    # On the test set the excess margin y<z, w*> is |N(0, 1)|: mean sqrt(2/pi) ~ 0.80 (an extra
    # shift such as gamma*w* instead of gamma/2*w*, or no shift at all, fails this).
    x, y = dm.splits["test"]
    excess = y.double() * (x.double() @ w) - gamma / 2
    assert excess.mean().item() == pytest.approx(math.sqrt(2 / math.pi), abs=0.06)
    # orthogonal to w*, x is standard Gaussian noise; the labels are balanced
    noise = x.double() - torch.outer(x.double() @ w, w)
    assert noise.var().item() == pytest.approx(1.0, abs=0.05)
    assert (y == 1).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_gaussian_gamma_zero_is_plain_gaussian_labelled_by_sign():
    dm = _built(GaussianSeparatedData, **GAUSS | {"gamma": 0.0}, seed=1)
    x, y = dm.splits["train"]
    assert torch.equal(torch.sign(x @ dm.w_star), y)


def test_gaussian_determinism_and_seed_dependence():
    a = _built(GaussianSeparatedData, **GAUSS, seed=7)
    torch.manual_seed(123)  # the global seed must not matter
    b = _built(GaussianSeparatedData, **GAUSS, seed=7)
    _assert_same_splits(a, b)
    assert torch.equal(a.w_star, b.w_star)
    c = _built(GaussianSeparatedData, **GAUSS, seed=8)
    assert not torch.equal(a.w_star, c.w_star)
    assert not torch.equal(a.splits["train"][0], c.splits["train"][0])
    _assert_global_rng_untouched(lambda: _built(GaussianSeparatedData, **GAUSS, seed=9))


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"gamma": -0.5}, "data.gamma"),
        ({"n_train": 0}, "data.n_train"),
        ({"n_test": 0}, "data.n_test"),
        ({"d": 0}, "data.d"),
    ],
)
def test_gaussian_bad_values_raise_config_error_naming_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        GaussianSeparatedData(**GAUSS | bad)


# ---------------------------------------------------------------- E3/E4: ModularArithmeticData


def _modular_rule(a: int, b: int, p: int, operation: str) -> int:
    """The label, computed without torch (division by brute-force search for the quotient)."""
    if operation == "add":
        return (a + b) % p
    if operation == "sub":
        return (a - b) % p
    if operation == "mul":
        return (a * b) % p
    if operation == "div":
        (c,) = [c for c in range(p) if (c * b) % p == a]
        return c
    if operation == "x2_plus_xy":
        return (a**2 + a * b) % p
    if operation == "x3_plus_xy":
        return (a**3 + a * b) % p
    if operation == "max":
        return max(a, b)
    raise AssertionError(operation)


OPERATIONS = ["add", "sub", "mul", "div", "x2_plus_xy", "x3_plus_xy", "max"]


@pytest.mark.parametrize("p", [7, 11])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_modular_labels_follow_the_rule_and_splits_partition_all_pairs(operation, p):
    dm = _built(ModularArithmeticData, p=p, operation=operation, train_fraction=0.3, seed=1)
    assert dm.num_classes == p
    seen: list[tuple[int, int]] = []
    for split in ("train", "test"):
        x, y = dm.splits[split]
        assert x.dtype == torch.long and y.dtype == torch.long
        assert x.shape == (len(y), 2)
        for (a, b), label in zip(_pairs(x), y.tolist(), strict=True):
            assert label == _modular_rule(a, b, p, operation), (split, a, b)
        seen += _pairs(x)
    expected = {(a, b) for a in range(p) for b in range(p) if operation != "div" or b != 0}
    assert len(seen) == len(set(seen))  # no pair twice, in particular none in both splits
    assert set(seen) == expected
    assert len(dm.splits["train"][1]) == round(0.3 * len(expected))


@pytest.mark.parametrize(("fraction", "p"), [(0.4, 7), (0.5, 11), (0.9, 7), (0.25, 11)])
def test_modular_train_size_is_rounded_fraction(fraction, p):
    dm = _built(ModularArithmeticData, p=p, operation="add", train_fraction=fraction)
    n_train, n_test = len(dm.splits["train"][1]), len(dm.splits["test"][1])
    assert n_train == round(fraction * p * p)
    assert n_train + n_test == p * p


def test_modular_determinism_and_seed_dependence():
    kw = {"p": 11, "operation": "add", "train_fraction": 0.4}
    a = _built(ModularArithmeticData, **kw, seed=3)
    torch.manual_seed(999)
    b = _built(ModularArithmeticData, **kw, seed=3)
    _assert_same_splits(a, b)
    c = _built(ModularArithmeticData, **kw, seed=4)
    assert set(_pairs(a.splits["train"][0])) != set(_pairs(c.splits["train"][0]))
    _assert_global_rng_untouched(lambda: _built(ModularArithmeticData, **kw, seed=5))


def test_modular_div_needs_prime_p():
    with pytest.raises(ConfigError, match="data.p"):
        ModularArithmeticData(p=9, operation="div")
    with pytest.raises(ConfigError, match="data.p"):
        ModularArithmeticData(p=96, operation="div")
    # a composite modulus is fine for the other operations, a prime one for division
    _built(ModularArithmeticData, p=9, operation="mul")
    _built(ModularArithmeticData, p=13, operation="div")


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"p": 1}, "data.p"),
        ({"p": 0}, "data.p"),
        ({"train_fraction": 0.0}, "data.train_fraction"),
        ({"train_fraction": 1.0}, "data.train_fraction"),
        ({"train_fraction": 1.5}, "data.train_fraction"),
        ({"train_fraction": -0.2}, "data.train_fraction"),
    ],
)
def test_modular_bad_values_raise_config_error_naming_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        ModularArithmeticData(**{"p": 7, "operation": "add", "train_fraction": 0.4} | bad)


def test_is_prime():
    primes = [2, 3, 5, 7, 11, 13, 97, 113, 7919]
    composites = [0, 1, 4, 6, 9, 15, 25, 49, 91, 96, 7917, 7921]  # 7921 = 89^2
    assert all(is_prime(n) for n in primes)
    assert not any(is_prime(n) for n in composites)
    # agrees with trial division by every smaller number
    for n in range(-3, 200):
        assert is_prime(n) == (n >= 2 and all(n % k for k in range(2, n)))


# ---------------------------------------------------------------- E5: MatrixCompletionData


@pytest.mark.parametrize(("d", "fraction"), [(7, 0.2), (11, 0.05), (10, 0.5)])
def test_matrix_completion_targets_and_partition(d, fraction):
    dm = _built(MatrixCompletionData, d=d, observed_fraction=fraction, seed=2)
    seen: list[tuple[int, int]] = []
    for split in ("train", "test"):
        x, y = dm.splits[split]
        assert x.shape == (len(y), 2) and y.is_floating_point()
        expected = torch.tensor([i * j / d**2 for i, j in _pairs(x)], dtype=torch.float64)
        torch.testing.assert_close(y.double(), expected, rtol=1e-6, atol=0.0)
        seen += _pairs(x)
    assert len(seen) == len(set(seen)) == d * d
    assert set(seen) == {(i, j) for i in range(d) for j in range(d)}
    assert len(dm.splits["train"][1]) == round(fraction * d * d)


def test_matrix_completion_determinism_and_seed_dependence():
    a = _built(MatrixCompletionData, d=13, observed_fraction=0.1, seed=0)
    torch.manual_seed(5)
    b = _built(MatrixCompletionData, d=13, observed_fraction=0.1, seed=0)
    _assert_same_splits(a, b)
    c = _built(MatrixCompletionData, d=13, observed_fraction=0.1, seed=1)
    assert set(_pairs(a.splits["train"][0])) != set(_pairs(c.splits["train"][0]))
    _assert_global_rng_untouched(lambda: _built(MatrixCompletionData, d=13, seed=2))


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"observed_fraction": 0.0}, "data.observed_fraction"),
        ({"observed_fraction": 1.0}, "data.observed_fraction"),
        ({"observed_fraction": -0.1}, "data.observed_fraction"),
        ({"d": 1}, "data.d"),
        ({"d": 0}, "data.d"),
    ],
)
def test_matrix_completion_bad_values_raise_config_error(bad, key):
    with pytest.raises(ConfigError, match=key):
        MatrixCompletionData(**{"d": 7, "observed_fraction": 0.2} | bad)


# ---------------------------------------------------------------- Omnigrok: DigitsData


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple]:
    return [(*pixels, label) for pixels, label in zip(x.tolist(), y.tolist(), strict=True)]


def test_digits_split_values_and_labels():
    from sklearn.datasets import load_digits

    dm = _built(DigitsData, n_train=300, seed=0)
    (x_tr, y_tr), (x_te, y_te) = dm.splits["train"], dm.splits["test"]
    assert x_tr.shape == (300, 64) and x_te.shape == (1797 - 300, 64)
    assert y_tr.shape == (300,) and y_te.shape == (1497,)
    assert y_tr.dtype == torch.long and dm.num_classes == 10
    x, y = torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te])
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert set(y.tolist()) == set(range(10))
    # train + test is the whole data set (as a multiset of (pixels/16, label) rows)
    digits = load_digits()
    reference = _rows(
        torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)
    )
    assert sorted(_rows(x, y)) == sorted(reference)


def test_digits_determinism_and_seed_dependence():
    a = _built(DigitsData, n_train=100, seed=4)
    torch.manual_seed(77)
    b = _built(DigitsData, n_train=100, seed=4)
    _assert_same_splits(a, b)
    c = _built(DigitsData, n_train=100, seed=5)
    assert not torch.equal(a.splits["train"][0], c.splits["train"][0])


@pytest.mark.parametrize("n_train", [0, -1, 1797, 2000])
def test_digits_bad_n_train_raises_config_error(n_train):
    with pytest.raises(ConfigError, match="data.n_train"):
        DigitsData(n_train=n_train)
