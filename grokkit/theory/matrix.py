"""The two completions of the matrix-completion experiment (arXiv 2311.18817, Fig. 3) that
W = UUᵀ − VVᵀ moves between: zero-fill in the kernel (early) phase, minimum nuclear norm in the
rich (late) phase."""

import cvxpy as cp
import numpy as np


def zero_fill_completion(
    d: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """(d, d) symmetric matrix: observed entries and their mirrors (W_ij = W_ji = value), zero
    elsewhere. The kernel-regime predictor of the matrix-completion experiment (arXiv
    2311.18817, Fig. 3):
    from U = V = α·I the tangent features of entry (i, j) only touch entries (i, j) and (j, i).
    An entry observed more than once, or with its mirror, gets the mean of its values."""
    total, count = _symmetric_sums(d, rows, cols, values)
    return np.divide(total, count, out=np.zeros((d, d)), where=count > 0)


def min_nuclear_norm_completion(
    d: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """argmin ‖W‖_* over symmetric W with W_ij = value on the observed entries (and mirrors): the
    late-phase predictor of E5. For symmetric W, ‖W‖_* = min tr P + tr N over W = P − N with
    P, N ⪰ 0, which is min ‖U‖²_F + ‖V‖²_F over W = UUᵀ − VVᵀ, the net's own min-norm
    interpolation problem (R2). Solved as that SDP (two d×d PSD cones, half the size of normNuc's
    2d×2d one) by SCS via cvxpy, to 1e-7: seconds at d = 97, where an interior-point solver
    (Clarabel) takes minutes. Repeated or mirrored observations are averaged, as in
    zero_fill_completion."""
    total, count = _symmetric_sums(d, rows, cols, values)
    i, j = np.nonzero(np.triu(count > 0))
    target = total[i, j] / count[i, j]
    p, n = cp.Variable((d, d), PSD=True), cp.Variable((d, d), PSD=True)
    w = p - n
    problem = cp.Problem(cp.Minimize(cp.trace(p) + cp.trace(n)), [w[i, j] == target])
    problem.solve(solver=cp.SCS, eps_abs=1e-7, eps_rel=1e-7)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"SCS failed on the nuclear-norm completion: {problem.status}")
    out = p.value - n.value
    return (out + out.T) / 2


def _symmetric_sums(
    d: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the values observed at each entry, every observation counted at (i, j)
    and at its mirror (j, i)."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if not rows.shape == cols.shape == values.shape or rows.ndim != 1:
        raise ValueError("rows, cols and values must be 1-D arrays of the same length")
    if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= d):
        raise ValueError(f"observed indices must lie in 0..{d - 1}")
    total, count = np.zeros((d, d)), np.zeros((d, d))
    for a, b in ((rows, cols), (cols, rows)):
        np.add.at(total, (a, b), values)
        np.add.at(count, (a, b), 1.0)
    return total, count
