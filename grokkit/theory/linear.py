"""Max-margin linear classifiers: the two predictors a diagonal linear net moves between (E1, E2).

The kernel (early) phase of f(x) = ⟨u^⊙2 − v^⊙2, x⟩ follows the max-L2-margin classifier, the
rich (late) phase the max-L1-margin one (arXiv 2311.18817, §3). Both are homogeneous (no
bias), like the net. At depth L (w = u^⊙L − v^⊙L) the late phase's max-margin problem in θ,
min ‖θ‖² s.t. margins ≥ 1, is min Σ_j |w_j|^(2/L) in w: the max-ℓ_q margin with q = 2/L.
"""

import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
from scipy.optimize import linprog

from grokkit.theory.kernel import hard_margin_dual


@dataclass
class LinearClassifier:
    """w has unit norm in its own norm (‖w‖₁ = 1 for norm=1, ‖w‖₂ = 1 for norm=2), float64;
    margin = min_i y_i⟨w, x_i⟩ is the maximum margin in that norm."""

    w: np.ndarray
    margin: float
    norm: float


def max_margin_classifier(x: np.ndarray, y: np.ndarray, norm: float) -> LinearClassifier:
    """Homogeneous (no bias) max-margin linear classifier: maximize min_i y_i⟨w,x_i⟩ over ‖w‖_p ≤ 1,
    i.e. min ‖w‖_p s.t. y_i⟨w,x_i⟩ ≥ 1, then normalized. x: (n, d), y: (n,) with entries ±1.
    Raises ValueError('... not linearly separable ...') when no w separates the data.

    norm=1 is a linear program in w = w⁺ − w⁻, solved by column generation (Clarabel rounds, a
    last HiGHS solve); norm=2 is the SVM dual over the n×n Gram matrix (Clarabel via cvxpy).
    Neither forms a d×d matrix; d = 10⁵, n = 256 takes a few seconds. 0 < norm < 1 (the
    quasi-norm ‖w‖_q = (Σ|w_j|^q)^(1/q)) is not convex: the result is a KKT point, found from
    the max-L2-margin classifier by reweighted L1 (see ``_min_lq_separator``), not necessarily
    the global maximum.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be (n, d) and y (n,), got {x.shape} and {y.shape}")
    if not np.all(np.abs(y) == 1):
        raise ValueError("labels y must be ±1")
    if norm == 1:
        w = _min_l1_separator(y[:, None] * x)
    elif norm == 2:
        w = x.T @ hard_margin_dual(x @ x.T, y)
    elif 0 < norm < 1:
        w = _min_lq_separator(y[:, None] * x, norm, x.T @ hard_margin_dual(x @ x.T, y))
    else:
        raise ValueError(f"norm must be 1, 2 or in (0, 1), got {norm}")
    w /= np.sum(np.abs(w) ** norm) ** (1 / norm)
    margin = float(np.min(y * (x @ w)))
    if not margin > 0:
        raise ValueError("the data are not linearly separable (no w has a positive margin)")
    return LinearClassifier(w=w, margin=margin, norm=norm)


def _min_l1_separator(z: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """argmin ‖w‖₁ s.t. z w ≥ 1 (rows z_i = y_i x_i), by column generation.

    One LP over all 2d columns takes HiGHS 5-20 s at d = 10⁴, but the optimum uses at most n
    coordinates. So each round solves the LP over a working set of coordinates and prices every
    other one with the round's duals a ≥ 0: coordinate j can lower ‖w‖₁ only if |z_jᵀa| > 1.
    When none can, a/(1 + tol) is dual feasible for the full LP, which certifies (to the
    solvers' tolerances) that the working set's optimum is the full one. The rounds take
    Clarabel's interior-point duals: central ones, which price out almost at once, where the
    simplex vertex duals of this degenerate LP let in a few columns per round (hundreds of
    rounds). A last HiGHS solve returns a vertex, a w with at most n nonzeros.
    """
    n, d = z.shape
    working = np.argsort(-np.abs(z.sum(0)))[: min(d, 2 * n)]  # most label-correlated first
    while working.size < d:
        a = _central_duals(z[:, working])
        if a is None:  # the working set cannot separate: one LP over all coordinates decides
            working = np.arange(d)
            break
        excess = np.abs(z.T @ a) - 1
        excess[working] = -np.inf
        entering = np.flatnonzero(excess > tol)
        if entering.size == 0:
            break
        working = np.concatenate([working, entering])
    w = np.zeros(d)
    w[working] = _vertex_l1_lp(z[:, working])
    return w


def _min_lq_separator(z: np.ndarray, q: float, start: np.ndarray, rounds: int = 100) -> np.ndarray:
    """A KKT point of min Σ_j |w_j|^q s.t. z w ≥ 1 (0 < q < 1), by iteratively reweighted L1
    (Candès, Wakin & Boyd 2008): each round minimizes the concave objective's linearization at
    the last w, Σ_j c_j|w_j| with c_j = (|w_j| + ε)^(q−1), an L1 LP after the change of
    variables w_j = v_j / c_j; the objective never increases (majorize-minimize). The start is
    the max-L2-margin direction, scaled to margin 1: where a depth-L diagonal net's flow starts
    its late phase from (the kernel regime's predictor), though the flow may reach another KKT
    point. Coordinates the LP zeroes stay zero (their weight becomes ~1/ε^(1−q))."""
    w = start / np.min(z @ start)
    objective = np.sum(np.abs(w) ** q)
    for _ in range(rounds):
        eps = 1e-9 * np.max(np.abs(w))
        c = (np.abs(w) + eps) ** (q - 1)
        keep = np.flatnonzero(np.abs(w) > eps)
        v = _min_l1_separator(z[:, keep] / c[keep])
        w = np.zeros_like(w)
        w[keep] = v / c[keep]
        previous, objective = objective, np.sum(np.abs(w) ** q)
        if objective >= previous * (1 - 1e-10):
            break
    return w


def _central_duals(z: np.ndarray) -> np.ndarray | None:
    """Duals a ≥ 0 of the margin constraints of min ‖w‖₁ s.t. z w ≥ 1 from Clarabel (interior
    point, no crossover), or None when the LP is infeasible."""
    w = cp.Variable(z.shape[1])
    margins = z @ w >= 1
    problem = cp.Problem(cp.Minimize(cp.norm1(w)), [margins])
    with warnings.catch_warnings():  # near-optimal duals are all pricing needs (see the caller)
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        problem.solve(solver=cp.CLARABEL)
    if problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        return None
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"Clarabel failed on the max-L1-margin LP: {problem.status}")
    return np.maximum(margins.dual_value, 0.0)


def _vertex_l1_lp(z: np.ndarray) -> np.ndarray:
    """argmin ‖w‖₁ s.t. z w ≥ 1 as the LP min 1ᵀ(w⁺ + w⁻) s.t. −z (w⁺ − w⁻) ≤ −1, w± ≥ 0, solved
    by HiGHS (a vertex: at most n nonzeros)."""
    n, d = z.shape
    res = linprog(
        np.ones(2 * d), A_ub=np.hstack([-z, z]), b_ub=-np.ones(n), bounds=(0, None), method="highs"
    )
    if res.status == 2:
        raise ValueError("the data are not linearly separable (the max-L1-margin LP is infeasible)")
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the max-L1-margin LP: {res.message}")
    return res.x[:d] - res.x[d:]
