"""Kernel-regime predictors for a precomputed kernel, e.g. the empirical NTK at the initial point.

In the early phase a large-init net behaves like its linearization at θ̄: a classifier tends to
the max-margin predictor on the NTK features (problem K1 of arXiv 2311.18817, §3), a
regressor to the minimum-norm interpolant (K2). Both depend on the features only through the
kernel matrix.
"""

import cvxpy as cp
import numpy as np


def kernel_predictor(
    k_train: np.ndarray, y_train: np.ndarray, k_test: np.ndarray, kind: str
) -> np.ndarray:
    """Predictions on test points of the kernel-regime predictor for a precomputed kernel
    (the initial NTK): k_train (n, n), k_test (m, n) = K(test_i, train_j).

    kind="binary": y ±1; the hard-margin kernel SVM without bias (max margin in the RKHS, K1).
      Returns the (m,) scores f(x) = Σ_i c_i K(x, x_i), scaled so that min_i y_i f(x_i) = 1.
      Raises ValueError when the training set is not separable in the RKHS.
    kind="multiclass": y class indices 0..C−1 (C = max(y) + 1); returns the (m, C) scores of the
      min-norm interpolant of the one-hot targets (pinv, as for "regression"), taking the NTK to
      be this kernel on every output and zero across outputs (exact for E3 with W2 = 0 at init).
      Why this reduction: it is exactly K2 for MSE on one-hot targets (Omnigrok); for
      cross-entropy its argmax equals that of the multiclass hard-margin SVM (K1 with margin
      f_y − max_{j≠y} f_j) whenever every margin constraint is active at the SVM optimum (every
      point a support vector, as when the kernel rank far exceeds n), and is a proxy for it
      otherwise; and it is one n×n eigendecomposition, so it scales to E3 (n ≈ 3 800, C = 97),
      where that SVM's QP (n·C variables, an n²·C Hessian) does not.
    kind="regression": y real; the min-norm interpolant k_test @ pinv(k_train) @ y (K2), (m,);
      a min-norm least-squares fit where k_train is singular (more points than features).
    """
    k_train = np.asarray(k_train, dtype=np.float64)
    k_test = np.asarray(k_test, dtype=np.float64)
    y_train = np.asarray(y_train).reshape(-1)
    n = y_train.shape[0]
    if k_train.shape != (n, n) or k_test.ndim != 2 or k_test.shape[1] != n:
        raise ValueError(
            f"need k_train (n, n), y_train (n,), k_test (m, n); got {k_train.shape}, "
            f"{y_train.shape}, {k_test.shape}"
        )
    if kind == "binary":
        if not np.all(np.abs(y_train) == 1):
            raise ValueError("binary labels must be ±1")
        return k_test @ hard_margin_dual(k_train, y_train.astype(np.float64))
    if kind == "multiclass":
        labels = y_train.astype(np.int64)
        if labels.min() < 0 or not np.array_equal(labels, y_train):
            raise ValueError("multiclass labels must be class indices 0..C-1")
        one_hot = np.eye(labels.max() + 1)[labels]
        return k_test @ _min_norm_coef(k_train, one_hot)
    if kind == "regression":
        return k_test @ _min_norm_coef(k_train, y_train.astype(np.float64))
    raise ValueError(f"kind must be 'binary', 'multiclass' or 'regression', got {kind!r}")


def hard_margin_dual(k: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients c = y ⊙ a of the bias-free hard-margin SVM with kernel matrix k, where a solves
    the dual min ½ aᵀ(yyᵀ ⊙ k)a − 1ᵀa, a ≥ 0 (Clarabel via cvxpy). The decision function
    f = k c has min_i y_i f_i = 1 and ‖f‖²_RKHS = 1ᵀa. The dual is unbounded, and a ValueError
    raised, when the data are not separable."""
    scale = float(np.max(np.diag(k)))
    if not scale > 0:
        raise ValueError("the data are not linearly separable (the kernel matrix is zero)")
    q = np.outer(y, y) * k / scale  # rescaled to O(1) entries for the solver's tolerances
    a = cp.Variable(y.shape[0], nonneg=True)
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(a, cp.psd_wrap((q + q.T) / 2)) - cp.sum(a)))
    problem.solve(solver=cp.CLARABEL)
    if "unbounded" in problem.status:  # also "unbounded_inaccurate", "infeasible_or_unbounded"
        raise ValueError("the data are not linearly separable (the SVM dual is unbounded)")
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"Clarabel failed on the hard-margin SVM dual: {problem.status}")
    return y * np.maximum(a.value, 0.0) / scale


def _min_norm_coef(k: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """pinv(k) @ targets for a symmetric PSD k, by its eigendecomposition (2-3x faster than an
    SVD lstsq) with numpy's pinv cutoff: eigenvalues below n·eps·max are dropped, so a singular
    kernel gives the min-norm least-squares fit, not an ill-conditioned one."""
    n = k.shape[0]
    eigenvalues, vectors = np.linalg.eigh((k + k.T) / 2)
    keep = eigenvalues > eigenvalues.max() * n * np.finfo(np.float64).eps
    vectors = vectors[:, keep]
    coef = vectors @ ((vectors.T @ targets.reshape(n, -1)) / eigenvalues[keep, None])
    return coef.reshape(targets.shape)
