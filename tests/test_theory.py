"""Reference predictors (grokkit.theory) against answers known by hand or by an independent route:
max margins in both norms, the E1 dichotomy, the two E5 completions, kernel predictors."""

import cvxpy as cp
import numpy as np
import pytest
from scipy.optimize import linprog

from grokkit.data import SparseLinearData
from grokkit.theory import (
    kernel_predictor,
    max_margin_classifier,
    min_nuclear_norm_completion,
    zero_fill_completion,
)

# Three points whose y_i·x_i are (4, 0), (1, 2), (3, 3). Max-L2 margin: w ∝ the min-norm point of
# their convex hull, (8/13)(2, 3), so w = (2, 3)/√13 and margin 8/√13 (the first two active).
# Max-L1 margin: on w = (a, 1 − a) the margins are 4a, 2 − a, 3, best at a = 0.4: margin 1.6.
HAND_X = np.array([[4.0, 0.0], [-1.0, -2.0], [3.0, 3.0]])
HAND_Y = np.array([1.0, -1.0, 1.0])


def _margin(w: np.ndarray, x: np.ndarray, y: np.ndarray, norm: int) -> float:
    return float(np.min(y * (x @ w)) / np.linalg.norm(w, ord=norm))


def _assert_max_margin(clf, x: np.ndarray, y: np.ndarray, others: list[np.ndarray]) -> None:
    """The reported margin is the margin of w, and no candidate (random directions, small
    perturbations of w, the given other solutions) has a larger one in the same norm."""
    rng = np.random.default_rng(0)
    p = clf.norm
    assert np.linalg.norm(clf.w, ord=p) == pytest.approx(1.0, abs=1e-12)
    assert clf.margin == pytest.approx(float(np.min(y * (x @ clf.w))), abs=1e-12)
    d = x.shape[1]
    candidates = [*rng.standard_normal((200, d))]
    candidates += [clf.w + s * rng.standard_normal(d) for s in (1e-2, 1e-3) for _ in range(200)]
    for w in [*candidates, *others]:
        assert _margin(w, x, y, p) <= clf.margin + 1e-7


def test_hand_computed_max_margins():
    l2 = max_margin_classifier(HAND_X, HAND_Y, norm=2)
    np.testing.assert_allclose(l2.w, np.array([2.0, 3.0]) / np.sqrt(13), atol=1e-6)
    assert l2.margin == pytest.approx(8 / np.sqrt(13), abs=1e-6)
    l1 = max_margin_classifier(HAND_X, HAND_Y, norm=1)
    np.testing.assert_allclose(l1.w, [0.4, 0.6], atol=1e-8)
    assert l1.margin == pytest.approx(1.6, abs=1e-8)
    assert (l1.norm, l2.norm) == (1, 2) and l1.w.dtype == l2.w.dtype == np.float64
    _assert_max_margin(l2, HAND_X, HAND_Y, [l1.w])
    _assert_max_margin(l1, HAND_X, HAND_Y, [l2.w])


def test_l1_solution_is_sparse_where_l2_is_dense():
    """y = x_1 on the hypercube: e_1 is the unique max-L1-margin direction (margin 1, the most a
    ±1 input allows), while the max-L2-margin w spreads over all coordinates."""
    rng = np.random.default_rng(1)
    x = rng.choice([-1.0, 1.0], size=(16, 40))
    y = x[:, 0].copy()
    assert np.all(np.abs(y @ x[:, 1:]) < 16)  # no other coordinate is perfectly correlated
    l1 = max_margin_classifier(x, y, norm=1)
    l2 = max_margin_classifier(x, y, norm=2)
    np.testing.assert_allclose(l1.w, np.eye(40)[0], atol=1e-8)
    assert l1.margin == pytest.approx(1.0, abs=1e-8)
    assert np.sum(np.abs(l2.w) > 1e-3) > 30
    assert l2.margin > 1.0  # beats e_1, whose L2 margin is 1
    _assert_max_margin(l1, x, y, [l2.w])
    _assert_max_margin(l2, x, y, [l1.w])


def test_l1_column_generation_matches_one_full_lp():
    """The column-generation solve against the dual LP over all coordinates at once: max 1ᵀa
    s.t. |zᵀa| ≤ 1, a ≥ 0, whose optimum 1ᵀa = min ‖w‖₁ = 1 / (max L1 margin)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((24, 300))
    y = np.sign(x[:, :5].sum(1))
    z = y[:, None] * x
    full = linprog(-np.ones(24), A_ub=np.vstack([z.T, -z.T]), b_ub=np.ones(600), method="highs")
    l1 = max_margin_classifier(x, y, norm=1)
    assert l1.margin == pytest.approx(-1 / full.fun, rel=1e-7)
    assert np.sum(l1.w != 0) <= 24  # a vertex: at most n nonzeros


def test_l1_falls_back_to_all_coordinates():
    """The six most label-correlated coordinates (y·x = (1, 1, −1)) cannot separate; only the
    weakly correlated last one can, alone (margin 0.1 with ‖w‖₁ = 1)."""
    x = np.column_stack([np.tile([[1.0], [1.0], [-1.0]], 6), [0.1, 0.1, 0.1]])
    l1 = max_margin_classifier(x, np.ones(3), norm=1)
    np.testing.assert_allclose(l1.w, np.eye(7)[6], atol=1e-9)
    assert l1.margin == pytest.approx(0.1, abs=1e-9)


@pytest.mark.parametrize("norm", [1, 2])
def test_not_separable_raises(norm):
    x = np.array([[1.0, 1.0], [-1.0, -1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="not linearly separable"):
        max_margin_classifier(x, np.array([1.0, 1.0, -1.0]), norm=norm)


@pytest.mark.parametrize(
    "c, expected",
    [
        (0.9, [0.0, 0.0, 1 / 0.9]),  # the third coordinate: the global minimum, for q ≤ 1
        (0.4, [1.0, 1.0, 0.0]),  # L1's vertex: a KKT point; the global one is (0, 0, 2.5)
    ],
)
def test_lq_margin_is_the_reweighted_l1_kkt_point_from_the_l2_start(c, expected):
    """min Σ|w_j|^q s.t. w1 + c·w3 ≥ 1, w2 + c·w3 ≥ 1 (q = 1/2): the objective is concave, so
    its minima are the vertices (1, 1, 0) (value 2) and (0, 0, 1/c) (value c^(-1/2)). From the
    max-L2-margin start, reweighted L1 reaches the vertex nearest it in the weighted sense: at
    c = 0.9 the global minimum; at c = 0.4 the other vertex (1, 1, 0), a KKT point, although
    (0, 0, 2.5) is lower (1.58 < 2) — the non-convex problem's answer depends on the start."""
    x = np.array([[1.0, 0.0, c], [0.0, 1.0, c]])
    clf = max_margin_classifier(x, np.ones(2), norm=0.5)
    expected = np.array(expected)
    expected_q = np.sum(np.abs(expected) ** 0.5) ** 2
    np.testing.assert_allclose(clf.w, expected / expected_q, atol=1e-7)
    assert clf.margin == pytest.approx(1 / expected_q, rel=1e-7)
    l2 = max_margin_classifier(x, np.ones(2), norm=2).w
    start = l2 / np.min(x @ l2)
    assert np.sum(np.abs(expected) ** 0.5) <= np.sum(np.abs(start) ** 0.5)  # never worse


def test_lq_margin_is_sparse_and_feasible_on_random_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 200))
    truth = np.zeros(200)
    truth[:3] = 1
    y = np.sign(x @ truth)
    l1 = max_margin_classifier(x, y, norm=1)
    for q in (2 / 3, 0.5):
        clf = max_margin_classifier(x, y, norm=q)
        assert np.sum(np.abs(clf.w) ** q) == pytest.approx(1.0)
        assert np.min(y * (x @ clf.w)) == pytest.approx(clf.margin) and clf.margin > 0
        assert (np.abs(clf.w) > 1e-9).sum() < (np.abs(l1.w) > 1e-9).sum()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"norm must be 1, 2 or in \(0, 1\)"):
        max_margin_classifier(HAND_X, HAND_Y, norm=3)
    with pytest.raises(ValueError, match="±1"):
        max_margin_classifier(HAND_X, np.array([1.0, 0.0, 1.0]), norm=2)


def test_e1_dichotomy_l1_generalizes_l2_does_not():
    """The paper's E1: with n = 128 ≪ d = 2000 and a 3-sparse truth, the rich-regime (max-L1)
    classifier generalizes while the kernel-regime (max-L2) one stays near chance."""
    splits = SparseLinearData(d=2000, k=3, n_train=128, n_test=500).build()
    (x, y), (x_test, y_test) = ((a.numpy(), b.numpy()) for a, b in splits.values())
    accuracy = {
        norm: np.mean(np.sign(x_test @ max_margin_classifier(x, y, norm).w) == y_test)
        for norm in (1, 2)
    }
    assert accuracy[1] > 0.9
    assert accuracy[2] < 0.75


def _observed(d: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random set of entries, drawn as in MatrixCompletionData (ordered pairs, no repeats)."""
    flat = np.random.default_rng(seed).permutation(d * d)[: round(fraction * d * d)]
    return flat // d, flat % d


def test_zero_fill_completion():
    d = 12
    truth = np.outer(np.arange(1, d + 1), np.arange(1, d + 1)) / d**2
    rows, cols = _observed(d, 0.4, seed=0)
    w = zero_fill_completion(d, rows, cols, truth[rows, cols])
    seen = np.zeros((d, d), dtype=bool)
    seen[rows, cols] = seen[cols, rows] = True
    np.testing.assert_array_equal(w[seen], truth[seen])
    assert np.all(w[~seen] == 0) and np.array_equal(w, w.T)
    # an entry observed with its mirror at different values gets their mean
    w = zero_fill_completion(3, np.array([0, 1, 2]), np.array([1, 0, 2]), np.array([1.0, 3.0, 5.0]))
    np.testing.assert_array_equal(w, [[0, 2, 0], [2, 0, 0], [0, 0, 5]])


def test_min_nuclear_norm_completion_recovers_rank_one():
    d = 12
    truth = np.outer(np.arange(1, d + 1), np.arange(1, d + 1)) / d**2
    rows, cols = _observed(d, 0.4, seed=0)
    w = min_nuclear_norm_completion(d, rows, cols, truth[rows, cols])
    assert w.shape == (d, d) and np.allclose(w, w.T)
    np.testing.assert_allclose(w[rows, cols], truth[rows, cols], atol=1e-6)
    np.testing.assert_allclose(w[cols, rows], truth[rows, cols], atol=1e-6)
    assert np.linalg.norm(w - truth) / np.linalg.norm(truth) < 1e-4
    # the zero-fill interpolates the same entries with a larger nuclear norm
    zero_fill = zero_fill_completion(d, rows, cols, truth[rows, cols])
    nuclear = [np.abs(np.linalg.eigvalsh(m)).sum() for m in (w, zero_fill)]
    assert nuclear[0] < nuclear[1]


def test_kernel_binary_is_the_l2_max_margin_with_a_linear_kernel():
    rng = np.random.default_rng(2)
    x, x_test = rng.standard_normal((20, 50)), rng.standard_normal((200, 50))
    y = np.sign(x[:, 0] + 0.5 * x[:, 1])
    clf = max_margin_classifier(x, y, norm=2)
    scores = kernel_predictor(x @ x.T, y, x_test @ x.T, "binary")
    assert scores.shape == (200,)
    np.testing.assert_array_equal(np.sign(scores), np.sign(x_test @ clf.w))
    # scores are the unnormalized SVM, w / margin, whose functional margin is 1
    np.testing.assert_allclose(scores, x_test @ clf.w / clf.margin, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not linearly separable"):
        kernel_predictor(np.ones((2, 2)), np.array([1.0, -1.0]), np.ones((1, 2)), "binary")


def test_kernel_regression_is_the_min_norm_interpolant():
    rng = np.random.default_rng(3)
    x, x_test = rng.standard_normal((15, 40)), rng.standard_normal((7, 40))
    y = rng.standard_normal(15)
    w_min_norm = np.linalg.pinv(x) @ y  # the least-norm solution of the underdetermined x w = y
    pred = kernel_predictor(x @ x.T, y, x_test @ x.T, "regression")
    assert pred.shape == (7,)
    np.testing.assert_allclose(pred, x_test @ w_min_norm, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(kernel_predictor(x @ x.T, y, x @ x.T, "regression"), y, atol=1e-10)


def test_kernel_multiclass_on_separated_clusters():
    rng = np.random.default_rng(4)
    centers = np.array([[0.0, 5.0], [5.0, 0.0], [-5.0, -5.0]])
    labels, test_labels = np.repeat(np.arange(3), 8), np.repeat(np.arange(3), 20)
    x = centers[labels] + 0.5 * rng.standard_normal((24, 2))
    x_test = centers[test_labels] + 0.5 * rng.standard_normal((60, 2))

    def rbf(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 8)

    scores = kernel_predictor(rbf(x, x), labels, rbf(x_test, x), "multiclass")
    assert scores.shape == (60, 3)
    np.testing.assert_array_equal(scores.argmax(1), test_labels)
    # column c is the min-norm interpolant of the indicator of class c
    column = kernel_predictor(rbf(x, x), (labels == 1).astype(float), rbf(x_test, x), "regression")
    np.testing.assert_allclose(scores[:, 1], column, atol=1e-10)
    with pytest.raises(ValueError, match="kind must be"):
        kernel_predictor(rbf(x, x), labels, rbf(x_test, x), "ranking")


def test_kernel_multiclass_matches_the_multiclass_svm_when_all_points_are_support_vectors():
    """With d ≫ n every margin constraint of the bias-free multiclass hard-margin SVM
    (min ‖W‖² s.t. f_y(x_i) − f_j(x_i) ≥ 1) is active; then its scores differ from the min-norm
    one-hot interpolant's by a shift shared by all classes, so both predict the same class."""
    rng = np.random.default_rng(6)
    x, x_test = rng.standard_normal((12, 400)), rng.standard_normal((50, 400))
    labels = np.arange(12) % 3
    one_hot = np.eye(3)[labels]
    w = cp.Variable((400, 3))
    scores = x @ w
    gaps = cp.sum(cp.multiply(one_hot, scores), axis=1, keepdims=True) - scores + one_hot
    cp.Problem(cp.Minimize(cp.sum_squares(w)), [gaps >= 1]).solve(solver=cp.CLARABEL)
    np.testing.assert_allclose(gaps.value, 1, atol=1e-6)  # every constraint active
    svm = x_test @ w.value
    mni = kernel_predictor(x @ x.T, labels, x_test @ x.T, "multiclass")
    shift = svm - mni
    np.testing.assert_allclose(shift, shift[:, :1] * np.ones(3), atol=1e-6)
    np.testing.assert_array_equal(svm.argmax(1), mni.argmax(1))
