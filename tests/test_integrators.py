"""AdaptiveFlow (grokkit/integrators.py) against gradient flows known in closed form.

The main problem: L(θ) = ½·θᵀAθ with a symmetric positive A of chosen eigenvalues, plus weight
decay λ, so θ(t) = exp(−(A + λI)·t)·θ0. θ is split over two tensors of different shapes, as a
net's parameters are. float64, so that the error measured is the method's, not rounding.
"""

import io
import math

import numpy as np
import pytest
import torch

from grokkit.integrators import (
    AdaptiveFlow,
    IntegrationError,
    rkc_coefficients,
    stability_bound,
    stages_for,
)

SHAPES = ((4, 5), (30,))  # 50 coordinates in two tensors


class Quadratic:
    """½·θᵀAθ, A = Q·diag(eigs)·Qᵀ; counts its gradient calls."""

    def __init__(self, eigs: np.ndarray, lam: float, scale: float = 1.0, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        n = len(eigs)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
        self.q, self.eigs, self.lam = q, torch.as_tensor(eigs, dtype=torch.float64), lam
        self.a = q @ torch.diag(self.eigs) @ q.T
        theta0 = torch.randn(n, generator=gen, dtype=torch.float64)
        self.theta0 = scale * theta0 / theta0.norm()
        self.params = self.split(self.theta0.clone())
        self.calls = 0

    @staticmethod
    def split(flat: torch.Tensor) -> list[torch.Tensor]:
        sizes = [math.prod(s) for s in SHAPES]
        return [c.reshape(s).clone() for c, s in zip(flat.split(sizes), SHAPES, strict=True)]

    def flat(self) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in self.params])

    def gradient(self) -> list[torch.Tensor]:
        self.calls += 1
        return self.split(self.a @ self.flat())

    def exact(self, t: float) -> torch.Tensor:
        decay = torch.exp(-(self.eigs + self.lam) * t)
        return self.q @ (decay * (self.q.T @ self.theta0))

    def error(self, t: float) -> float:
        exact = self.exact(t)
        return ((self.flat() - exact).norm() / exact.norm()).item()

    def flow(self, **kwargs) -> AdaptiveFlow:
        return AdaptiveFlow(self.params, self.gradient, weight_decay=self.lam, **kwargs)


def test_rkc_polynomial_is_stable_on_its_interval_and_second_order() -> None:
    """The coefficients define R(z) with |R| ≤ 1 on [−β(s), 0] and R(z) = e^z + O(z³)."""

    def r(s: int, z: float) -> float:  # one step of y' = z·y/h from y = 1
        mu, nu, mus, gam, _ = rkc_coefficients(s)
        y_prev, y = 1.0, 1.0 + mus[1] * z
        for j in range(2, s + 1):
            y_prev, y = y, (1 - mu[j] - nu[j]) + mu[j] * y + nu[j] * y_prev
            y += mus[j] * z * y_prev + gam[j] * z
        return y

    for s in (2, 3, 5, 10, 40):
        beta = stability_bound(s)
        assert 0.6 * (s * s - 1) < beta < 0.7 * s * s
        assert max(abs(r(s, z)) for z in np.linspace(-beta, 0.0, 2001)) <= 1.0 + 1e-9
        assert stages_for(beta, 100) == s and stages_for(beta * 1.01, 100) == s + 1
        # local error of one step ∝ z³: halving z divides it by ~8
        e1, e2 = abs(r(s, -0.02) - math.exp(-0.02)), abs(r(s, -0.01) - math.exp(-0.01))
        assert 7.0 < e1 / e2 < 9.0
        assert rkc_coefficients(s)[4][-1] == pytest.approx(1.0)  # the last stage ends at t + h


def test_global_error_falls_with_rtol_at_the_stated_order() -> None:
    """Order 2 with the error per step held to rtol: global error ∝ rtol^(2/3)."""
    rtols = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7]
    errors, steps = [], []
    for rtol in rtols:
        problem = Quadratic(np.geomspace(0.1, 10.0, 50), lam=0.1)
        flow = problem.flow(rtol=rtol)
        flow.advance_to(3.0)
        errors.append(problem.error(3.0))
        steps.append(flow.accepted)
        assert flow.evaluations == problem.calls
    slope = np.polyfit(np.log(rtols), np.log(errors), 1)[0]
    assert 0.55 < slope < 0.8, (slope, errors)
    assert all(e < 30 * r ** (2 / 3) for e, r in zip(errors, rtols, strict=True)), errors
    step_slope = np.polyfit(np.log(rtols), np.log(steps), 1)[0]
    assert -0.45 < step_slope < -0.25, steps  # steps ∝ rtol^(−1/3)


def test_weight_decay_alone_is_integrated_exactly() -> None:
    """∇L ≡ 0: θ(t) = e^{−λt}·θ0 to rounding, in a couple of steps (the Lawson form)."""
    problem = Quadratic(np.zeros(50), lam=0.5, scale=128.0)
    flow = problem.flow(rtol=1e-3)
    flow.advance_to(10.0)
    assert flow.t == 10.0
    assert problem.error(10.0) < 1e-13
    assert flow.accepted <= 3


def test_lands_exactly_on_every_requested_time() -> None:
    problem = Quadratic(np.geomspace(0.1, 10.0, 50), lam=0.1)
    unconstrained = problem.flow(rtol=1e-4)
    unconstrained.advance_to(5.0)

    problem = Quadratic(np.geomspace(0.1, 10.0, 50), lam=0.1)
    flow = problem.flow(rtol=1e-4)
    targets = np.geomspace(0.01, 5.0, 40).tolist()
    for target in targets:
        flow.advance_to(target)
        assert flow.t == target
        assert problem.error(target) < 1e-3
    # 40 landings, most of them shorter than the flow's own steps, cost about one evaluation
    # each (single Euler stages where that is accurate enough)
    assert flow.evaluations <= unconstrained.evaluations + 1.5 * len(targets)
    with pytest.raises(ValueError):
        flow.step(targets[-1])


def test_a_landing_up_to_twice_the_step_is_one_euler_stage_where_its_error_allows() -> None:
    """The step proposal (here set below what Euler's error allows, as a stretch of clipped
    landings leaves it) reaches past half of the way to the requested time: where Euler's
    predicted error allows, one stage lands there (1 evaluation), not two halves."""
    problem = Quadratic(np.geomspace(0.01, 1.0, 50), lam=0.01, scale=100.0)
    flow = problem.flow(rtol=1e-3)
    flow.advance_to(1.0)  # ρ and dF/dt are known from here on
    tol = flow.rtol * problem.flat().norm().item()
    reach = 0.9 * min(math.sqrt(2 * flow.safety * tol / flow._dfdt), 1 / flow.rho)
    flow.h = reach / 1.5
    accepted, evaluations = flow.accepted, flow.evaluations
    flow.advance_to(1.0 + reach)
    assert (flow.accepted - accepted, flow.evaluations - evaluations) == (1, 1)
    assert flow.last_stages == 1
    assert problem.error(1.0 + reach) < 1e-3


def test_euler_landings_do_not_refresh_the_curvature_estimate() -> None:
    """ρ picks RKC stage counts; a stretch of single-stage landings (here 250 log-spaced
    targets, most closer than the flow's own step) does not pay for power iterations."""
    problem = Quadratic(np.geomspace(0.01, 1.0, 50), lam=0.01, scale=100.0)
    flow = problem.flow(rtol=1e-3)
    estimates = 0
    estimate = flow._estimate_rho

    def counted() -> None:
        nonlocal estimates
        estimates += 1
        estimate()

    flow._estimate_rho = counted
    rkc_steps = 0
    for target in np.geomspace(0.01, 100.0, 250).tolist():
        while flow.t < target:
            flow.step(target)
            rkc_steps += flow.last_stages > 1
    assert flow.rejected == 0
    assert estimates <= 1 + rkc_steps  # the first, then at most one before each RKC step
    assert estimates < 10
    assert problem.error(100.0) < 5e-3


def test_every_evaluation_is_counted_rejected_ones_included() -> None:
    problem = Quadratic(np.geomspace(0.1, 10.0, 50), lam=0.1)
    flow = problem.flow(rtol=1e-4)
    flow.h = 50.0  # far too long a first step: its trial must fail the error test
    flow.advance_to(2.0)
    assert flow.rejected >= 1
    assert flow.evaluations == problem.calls
    assert problem.error(2.0) < 1e-2


def test_a_non_finite_trial_is_rejected_and_retried_smaller() -> None:
    """A gradient that overflows (NaN) wherever a coordinate overshoots past 0: the flow,
    θ_i(t) = e^{−(1+λ)t}·θ0_i > 0, never goes there, a too-long Chebyshev step does."""
    problem = Quadratic(np.ones(50), lam=0.1)
    problem.theta0 = problem.theta0.abs()
    problem.params = problem.split(problem.theta0.clone())
    exact_gradient = problem.gradient

    def overflowing() -> list[torch.Tensor]:
        grads = exact_gradient()
        return [g * math.nan for g in grads] if (problem.flat() < 0).any() else grads

    flow = AdaptiveFlow(problem.params, overflowing, weight_decay=0.1, rtol=1e-4)
    flow.h = 100.0
    flow.advance_to(3.0)
    assert flow.rejected >= 1
    assert flow.evaluations == problem.calls
    assert all(torch.isfinite(p).all() for p in problem.params)
    # ~45 steps of local error ≤ 1e-4·‖θ‖ each (a pure decay at rate 1.1 is all error)
    assert problem.error(3.0) < 5e-3


def test_a_trial_that_raises_the_potential_is_rejected() -> None:
    """A gradient flow never raises its potential: a trial ending higher by more than
    rtol·|value| is retried shorter, whatever its error estimate says (here the potential
    reports a rise at the first trial's end only)."""
    problem = Quadratic(np.ones(50), lam=0.0)
    values = iter([1.0, 5.0])  # the start, then the first trial: a rise of 4

    def potential() -> float:
        return next(values, 0.5)  # every later point: below the start

    flow = AdaptiveFlow(problem.params, problem.gradient, rtol=1e-3, potential=potential)
    flow.step()
    assert flow.rejected == 1 and flow.accepted == 1
    other = Quadratic(np.ones(50), lam=0.0)
    plain = AdaptiveFlow(other.params, other.gradient, rtol=1e-3)
    plain.step()
    assert plain.rejected == 0  # the same step without the potential passes


def test_state_dict_round_trip_continues_identically() -> None:
    def fresh() -> Quadratic:
        return Quadratic(np.geomspace(0.1, 100.0, 50), lam=0.05)

    first = fresh()
    flow = first.flow(rtol=1e-4)
    flow.advance_to(1.0)
    buffer = io.BytesIO()  # through torch.save/load, as a checkpoint goes
    torch.save({"flow": flow.state_dict(), "params": [p.clone() for p in first.params]}, buffer)
    flow.advance_to(4.0)

    buffer.seek(0)
    saved = torch.load(buffer)
    second = fresh()
    for p, q in zip(second.params, saved["params"], strict=True):
        p.copy_(q)
    resumed = second.flow(rtol=1e-4)
    resumed.load_state_dict(saved["flow"])
    resumed.advance_to(4.0)

    assert all(torch.equal(p, q) for p, q in zip(first.params, second.params, strict=True))
    assert (resumed.t, resumed.h, resumed.rho) == (flow.t, flow.h, flow.rho)
    assert (resumed.evaluations, resumed.accepted, resumed.rejected) == (
        flow.evaluations,
        flow.accepted,
        flow.rejected,
    )
    # the cached gradient came with the state: resuming cost no extra evaluation
    assert second.calls == flow.evaluations - saved["flow"]["evaluations"]


def test_parameters_changed_from_outside_are_picked_up() -> None:
    problem = Quadratic(np.geomspace(0.1, 10.0, 50), lam=0.1)
    flow = problem.flow(rtol=1e-6)
    flow.advance_to(1.0)
    with torch.no_grad():
        for p in problem.params:
            p.mul_(2.0)
    expected = problem.exact(1.0) * 2.0
    problem.theta0 = problem.q @ (torch.exp((problem.eigs + 0.1) * 1.0) * (problem.q.T @ expected))
    flow.advance_to(2.0)
    assert problem.error(2.0) < 1e-4


def test_stiff_start_of_a_large_initialization() -> None:
    """Eigenvalues from 1e-2 to 1e4 and ‖θ0‖ = 100: a classical explicit method needs
    h ≤ 2e-4, 10^5 steps to t = 20. No warm-up, no NaN, and under 5% of that."""
    problem = Quadratic(np.geomspace(1e-2, 1e4, 50), lam=1e-2, scale=100.0)
    flow = problem.flow(rtol=1e-3)
    flow.advance_to(20.0)
    assert flow.t == 20.0
    assert all(torch.isfinite(p).all() for p in problem.params)
    assert problem.error(20.0) < 1e-2
    assert flow.evaluations < 5000
    assert flow.rejected <= 5


def test_a_non_finite_gradient_at_the_start_is_an_error() -> None:
    problem = Quadratic(np.ones(50), lam=0.0)
    flow = AdaptiveFlow(problem.params, lambda: [g * math.inf for g in problem.gradient()])
    with pytest.raises(IntegrationError, match="not finite"):
        flow.step(1.0)
