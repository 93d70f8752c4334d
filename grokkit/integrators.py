"""Adaptive integration of the gradient flow dθ/dt = −∇L(θ) − λθ (coupled weight decay).

The paper's phenomena live in gradient-flow time t; fixed-step gradient descent pays for them
with a step small enough for the stiffest moment of the run. ``AdaptiveFlow`` follows the same
flow under a stated local error tolerance and lets the step grow wherever the flow allows.

Method: second-order Runge–Kutta–Chebyshev (RKC2; Sommeijer, Shampine & Verwer 1998, their
``rkc`` code), in the Lawson form that integrates the weight decay exactly. The numbers behind
each choice are printed by benchmarks/flow_methods.py.
- Why Chebyshev: the Jacobian of a gradient flow, −(∇²L + λI), is symmetric, so its eigenvalues
  are real and a method with a long real stability interval fits. On E3 (paper Fig. 2b) the step
  of every classical pair we measured (textbook Heun–Euler, torchdiffeq's adaptive_heun, bosh3,
  dopri5) was held by stability, h·ρ(∇²L) ≈ 2–3.3, for the whole start, not by accuracy. An
  s-stage RKC2 step is stable for h·ρ ≤ β(s) ≈ 0.65·s², so it costs s evaluations where a
  classical pair needs ~s²/3 steps; on smooth stretches s falls back to 2.
  ρ comes from a warm-started power iteration on gradient differences (as in ``rkc``).
- Why Lawson: with φ(τ) = e^{λτ}·θ(t_n + τ) the decay leaves the equation
  (dφ/dτ = −e^{λτ}·∇L(e^{−λτ}·φ)), so no step is spent resolving e^{−λt}; on E1's long kernel
  phase that exponential was what held a plain Heun–Euler pair at h ≈ √(2·rtol)/λ.
- Error estimate: ``rkc``'s est = 0.8·(y_n − y_{n+1}) + 0.4·h·(F_n + F_{n+1}), the step's
  distance from a cubic Hermite reconstruction, O(h³) for this second-order method, hence the
  err^(−1/3) step factors. It is free (F_{n+1} is the next step's first stage) and, unlike an
  embedded pair, valid for any s. It is measured normwise, ‖est‖ ≤ atol + rtol·max(‖θ_n‖,
  ‖θ_{n+1}‖): θ is one object, and the many coordinates that decay towards 0 must not each
  demand relative accuracy.
Order: 2 (global error ∝ h²; with the step set by the error test it falls like rtol^(2/3)).
Steps shortened to land on a requested time may be single Lawson–Euler stages (order 1, their
own error h/2·(F_{n+1} − F_n) held to the same tolerance), see ``step``.
Non-smooth fields (ReLU nets): where steps cross many kinks, ∇L jumps within a step, the
estimate grows about like h instead of h³, and rtol becomes a cap on each step's move
(~rtol·‖θ‖); the cost then grows like 1/rtol instead of rtol^(-1/3). benchmarks/flow_rtol.py
measures it on E3 (paper Fig. 2).
"""

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import torch

Tensor = torch.Tensor
GradientClosure = Callable[[], Sequence[Tensor | None]]

DAMPING = 2.0 / 13.0  # rkc's ε: shrinks β(s) ~2% and keeps |R(z)| ≤ 1 − ε/3-ish inside it
PROBE = 1e-6  # power-iteration probe, relative to ‖θ‖ (see _estimate_rho)


class IntegrationError(RuntimeError):
    """The flow cannot be advanced: a non-finite gradient at an accepted point, or a step size
    that collapsed."""


def _finite(x: Tensor) -> bool:
    """No NaN or inf in x: one reduction (a finite sum that overflows counts as not finite)."""
    return math.isfinite(x.sum().item())


def _chebyshev(w0: float, s: int) -> tuple[list[float], list[float], list[float]]:
    """T_j(w0), T_j'(w0), T_j''(w0) for j = 0..s, by the three-term recurrences."""
    t, dt, d2t = [1.0, w0], [0.0, 1.0], [0.0, 0.0]
    for _ in range(2, s + 1):
        t.append(2 * w0 * t[-1] - t[-2])
        dt.append(2 * w0 * dt[-1] - dt[-2] + 2 * t[-2])
        d2t.append(2 * w0 * d2t[-1] - d2t[-2] + 4 * dt[-2])
    return t, dt, d2t


@lru_cache(maxsize=256)
def rkc_coefficients(s: int) -> tuple[tuple[float, ...], ...]:
    """(μ, ν, μ̃, γ̃, c), indexed by stage, of the damped s-stage RKC2 step (s ≥ 2):

    Y_1 = Y_0 + μ̃_1·h·F(Y_0);  for j ≥ 2:
    Y_j = (1−μ_j−ν_j)·Y_0 + μ_j·Y_{j−1} + ν_j·Y_{j−2} + μ̃_j·h·F(Y_{j−1}) + γ̃_j·h·F(Y_0),
    and Y_s is the step's result; c_j is stage j's time as a fraction of h (c_s = 1).
    """
    w0 = 1.0 + DAMPING / s**2
    t, dt, d2t = _chebyshev(w0, s)
    w1 = dt[s] / d2t[s]
    b = [0.25 / w0**2] * 3 + [d2t[j] / dt[j] ** 2 for j in range(3, s + 1)]
    mu, nu, mus, gam = [0.0, 0.0], [0.0, 0.0], [0.0, w1 * b[1]], [0.0, 0.0]
    c = [0.0, w1 * b[1]]
    for j in range(2, s + 1):
        mu.append(2 * w0 * b[j] / b[j - 1])
        nu.append(-b[j] / b[j - 2])
        mus.append(2 * w1 * b[j] / b[j - 1])
        gam.append(-(1.0 - b[j - 1] * t[j - 1]) * mus[j])
        c.append(mu[j] * c[j - 1] + nu[j] * c[j - 2] + mus[j] + gam[j])
    return tuple(mu), tuple(nu), tuple(mus), tuple(gam), tuple(c)


@lru_cache(maxsize=256)
def stability_bound(s: int) -> float:
    """β(s): the s-stage RKC2 step is stable for h·ρ ≤ β(s) = (1 + w0)·T_s''/T_s' ≈ 0.65·s²."""
    w0 = 1.0 + DAMPING / s**2
    _, dt, d2t = _chebyshev(w0, s)
    return (1.0 + w0) * d2t[s] / dt[s]


def stages_for(h_rho: float, max_stages: int) -> int:
    """The fewest stages (2 ≤ s ≤ max_stages) whose stability interval holds h·ρ."""
    s = max(2, math.ceil(math.sqrt(1.0 + h_rho / 0.653)) - 2)
    while s < max_stages and stability_bound(s) < h_rho:
        s += 1
    return s


class AdaptiveFlow:
    """Advance parameter tensors in place along dθ/dt = −∇L(θ) − λθ under local error control.

    The integrator owns the parameters between calls: it writes each trial point into them, calls
    ``gradient()``, which must return ∇L at their current values (one tensor per parameter, None
    for an unused one, no weight decay), and leaves them at the last accepted point. If they are
    changed from outside, the cached gradient is dropped and recomputed (one evaluation).

    Counters: ``evaluations`` (every call of ``gradient``: stages, rejected trials and ρ probes),
    ``accepted``, ``rejected``; ``t`` is the flow time reached, ``h`` the next step size.

    Args:
        params: the tensors to integrate (e.g. ``list(net.parameters())``), one dtype and device.
        gradient: closure returning ∇L at the current parameters; called with grad enabled.
        weight_decay: λ ≥ 0, integrated exactly.
        rtol: allowed local error per step, relative to ‖θ‖.
        atol: absolute floor of the allowed local error (for θ near 0).
        max_stages: most stages per step; caps h·ρ at β(max_stages) ≈ 0.65·max_stages².
            (Rounding inside a step grows slowly with s: one float32 step of s = 300 on a
            linear flow was off its float64 twin by 1.4e-5·‖θ‖.)
        safety: factor on every step-size proposal.
        max_growth: largest factor by which one step may enlarge the next.
        potential: optional; returns the value whose gradient the last ``gradient()`` call
            computed (e.g. log L). A gradient flow never raises it, so a trial that raises it
            by more than rtol·|value| is rejected whatever its error estimate: in the late
            phase of a loss-normalized run a step of ~rtol·‖θ‖ can flip a training point's
            margin (log L from −3 068 to −1, paper Fig. 4), which the estimate missed.
    """

    # ρ picks an RKC step's stages. It is re-estimated after every rejection and, before an
    # RKC step, once RHO_EVERY steps have been accepted since the last estimate or the
    # evaluations since reach RHO_COST_RATIO × what it cost: ≤ ~10% of the evaluations go to
    # ρ, and a ρ left stale by a fast-changing start (on E1 it falls from 84 to 4 over
    # t ∈ [0, 5]) does not keep paying for stages it no longer needs. A run of Euler landings
    # does not refresh it: they use ρ only as a guard (h·ρ ≤ EULER_LANDING), and their own
    # error test sees an instability.
    RHO_EVERY = 10
    RHO_COST_RATIO = 10
    RHO_RTOL = 0.05  # power iteration stops when two estimates agree to 5%; 1.2× safety on top
    EULER_LANDING = 1.0  # largest h·ρ at which a landing step may be one Euler stage

    def __init__(
        self,
        params: Sequence[Tensor],
        gradient: GradientClosure,
        weight_decay: float = 0.0,
        rtol: float = 1e-3,
        atol: float = 0.0,
        max_stages: int = 250,
        safety: float = 0.8,
        max_growth: float = 10.0,
        potential: Callable[[], float] | None = None,
    ) -> None:
        if not (rtol > 0 and atol >= 0 and weight_decay >= 0):
            raise ValueError(
                f"need rtol > 0, atol >= 0, weight_decay >= 0; got {rtol}, {atol}, {weight_decay}"
            )
        if max_stages < 2 or not 0 < safety < 1 or max_growth <= 1:
            raise ValueError("need max_stages >= 2, 0 < safety < 1 and max_growth > 1")
        self.params = list(params)
        if len({(p.dtype, p.device) for p in self.params}) != 1:
            raise ValueError("AdaptiveFlow needs parameters of one dtype on one device")
        self.gradient = gradient
        self.potential = potential
        self._value: float | None = None  # the potential at the last accepted point
        self.weight_decay, self.rtol, self.atol = weight_decay, rtol, atol
        self.max_stages, self.safety, self.max_growth = max_stages, safety, max_growth
        self.t = 0.0
        self.h: float | None = None  # next step size; the first step picks one
        self.evaluations = self.accepted = self.rejected = 0
        self.last_stages = 0  # stages of the last accepted step (1: an Euler landing)
        self.rho: float | None = None  # 1.2 × the estimated spectral radius of ∇²L
        self._rho_steps = 0  # accepted steps since ρ was estimated
        self._rho_at = 0  # self.evaluations right after that estimate
        self._rho_cost = 0  # evaluations it took
        self._err_prev: float | None = None  # PI controller memory (last unclipped step)
        self._h_prev: float | None = None
        self._dfdt = math.inf  # ‖dF/dt‖ over the last step (predicts an Euler landing's error)
        self._eigvec: Tensor | None = None  # the power iteration's warm start
        self._theta: Tensor | None = None  # flat copy of the last accepted point
        self._grad: Tensor | None = None  # ∇L there: the next step's first stage

    # ---- the parameters as one flat vector ----

    def _read(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def _write(self, flat: Tensor) -> None:
        offset = 0
        for p in self.params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def _grad_at(self, flat: Tensor) -> Tensor:
        """∇L at ``flat``, counted; leaves the parameters at ``flat``."""
        self._write(flat)
        self.evaluations += 1
        with torch.enable_grad():
            grads = self.gradient()
        return torch.cat(
            [
                (g.detach() if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, self.params, strict=True)
            ]
        )

    def _sync(self) -> None:
        """Make (_theta, _grad) the current parameters and ∇L there."""
        theta = self._read()
        if self._theta is None or self._grad is None or not torch.equal(theta, self._theta):
            self._theta = theta.clone()
            self._grad = self._grad_at(self._theta)
            self._value = self.potential() if self.potential is not None else None
        if not _finite(self._grad):
            raise IntegrationError(f"the loss gradient is not finite at t = {self.t}")

    # ---- spectral radius ----

    def _estimate_rho(self) -> None:
        """Power iteration on v ↦ ∇L(θ + v) − ∇L(θ), warm-started from the last eigenvector.

        The probe must stay in ∇L's linear range: on E1's steep start rkc's float64 choice,
        sqrt(eps)·‖θ‖, is 3.5e-4·‖θ‖ in float32 and moved the margins by O(1), overestimating ρ
        up to 80×; 1e-6·‖θ‖ matched autograd Hessian-vector products to 1% there, in float32.
        """
        theta, g0 = self._theta, self._grad
        start = self.evaluations
        v = self._eigvec if self._eigvec is not None else g0
        if not _finite(v) or v.norm() == 0:
            v = torch.randn_like(theta)
        probe = PROBE * max(theta.norm().item(), 1.0)
        sigma = 0.0
        for _ in range(20):
            v = v * (probe / v.norm())
            jv = self._grad_at(theta + v) - g0
            if not _finite(jv):
                probe *= 0.01
                continue
            previous, sigma = sigma, jv.norm().item() / probe
            if sigma == 0:
                break
            v = jv
            if abs(sigma - previous) <= self.RHO_RTOL * sigma:
                break
        self._write(theta)
        self._eigvec = v
        self.rho = 1.2 * max(sigma, 1e-12)
        self._rho_steps, self._rho_cost, self._rho_at = (
            0,
            self.evaluations - start,
            self.evaluations,
        )

    # ---- stepping ----

    def step(self, t_max: float = math.inf) -> float:
        """Take one accepted step, ending at ``t_max`` or before; returns its size.

        A step that would pass ``t_max`` is shortened to land on it exactly (or to half the
        remaining distance, so that no sliver of a step follows; see ``_plan``). When such a
        shortened step has h·ρ ≤ 1 and an Euler error predicted (from the last step's change
        in ∇L) within tolerance, it is one Lawson–Euler stage, 1 evaluation instead of ≥ 2:
        300 log-spaced evaluation times in t ∈ [0.01, 600] put ~130 landings below t = 1 on
        E1, where the flow itself needs ~10 steps. If that trial fails its error test, RKC
        retries.
        The step's last call of ``gradient`` is at the accepted point (callers may keep what
        it computed alongside, e.g. the loss there).
        """
        if not t_max > self.t:
            raise ValueError(f"t_max = {t_max} is not after t = {self.t}")
        self._sync()
        if self.rho is None:
            self._estimate_rho()
        if self.h is None:
            self.h = self._initial_step()
        euler_allowed = True
        while True:
            h, euler = self._plan(t_max, euler_allowed)
            if not euler and (
                self._rho_steps >= self.RHO_EVERY
                or self.evaluations - self._rho_at >= self.RHO_COST_RATIO * self._rho_cost
            ):
                self._estimate_rho()
                h, euler = self._plan(t_max, euler_allowed)
            clipped = h != self.h
            s = 1 if euler else stages_for(h * self.rho, self.max_stages)
            theta, grad, err = self._trial(h, s)
            if err <= 1.0:
                break
            self.rejected += 1
            if euler:
                euler_allowed = False
                self._estimate_rho()  # the stale ρ let an Euler stage through: refresh it
                continue
            # a non-finite trial (an overflow past the stable range) counts as a large error
            self.h = h * (max(0.1, self.safety * err ** (-1 / 3)) if math.isfinite(err) else 0.1)
            self._estimate_rho()  # a rejection often means the curvature grew
            if self.h <= 1e-12 * max(1.0, abs(self.t)):
                raise IntegrationError(f"step size underflow (h = {self.h:.3g}) at t = {self.t}")
        self.t = t_max if h == t_max - self.t else self.t + h
        # ‖dF/dt‖ over this step predicts an Euler landing's error h²/2·‖dF/dt‖
        self._dfdt = (grad * math.exp(self.weight_decay * h) - self._grad).norm().item() / h
        self._theta, self._grad = theta, grad
        # the accepted trial's last gradient call was at θ_{n+1}: the potential is its value
        self._value = self.potential() if self.potential is not None else None
        self._write(theta)
        self.accepted += 1
        self._rho_steps += 1
        self.last_stages = s
        if not clipped:  # a shortened step says nothing about the next one: keep the proposal
            self.h = h * self._factor(err, h)
            self._err_prev, self._h_prev = err, h
        return h

    def _plan(self, t_max: float, euler_allowed: bool) -> tuple[float, bool]:
        """The next trial's size and whether it is one Euler stage. The proposal is cut to the
        stability bound and to land on ``t_max``; a proposal between half and all of the way
        there lands in one Euler stage where its predicted error allows, else in two halves
        (no sliver of a step follows). Only shortened steps may be Euler stages."""
        h = min(self.h, stability_bound(self.max_stages) / self.rho)
        remaining = t_max - self.t
        if h >= remaining:
            h = remaining
        elif h > 0.5 * remaining:
            if euler_allowed and self._euler_fits(remaining):
                return remaining, True
            h = 0.5 * remaining
        return h, h < self.h and euler_allowed and self._euler_fits(h)

    def _euler_fits(self, h: float) -> bool:
        """A Lawson–Euler stage of size h is within its stability range (h·ρ ≤ EULER_LANDING)
        and its error h²/2·‖dF/dt‖, predicted from the last step, within tolerance."""
        return (
            h * self.rho <= self.EULER_LANDING
            and 0.5 * h * h * self._dfdt <= self.safety * self._tolerance(self._theta)
        )

    def advance_to(self, t_target: float) -> None:
        """Integrate until ``t`` equals ``t_target`` exactly."""
        while self.t < t_target:
            self.step(t_target)

    def _initial_step(self) -> float:
        """h with h²·‖∇²L·∇L‖/2 = tol (Hairer's starting-step rule), bounding ‖∇²L·∇L‖ by
        ρ·‖∇L‖: no warm-up to tune, however steep the start; the controller grows it."""
        tol = self._tolerance(self._theta)
        curvature = self.rho / 1.2 * self._grad.norm().item()
        return math.sqrt(2 * tol / curvature) if curvature > 0 else 1.0

    def _factor(self, err: float, h: float) -> float:
        """rkc's controller: an I step first, then Watts' PI step (smoother where stability
        and accuracy take turns at limiting h), both with exponent 1/3 and clipped."""
        err = max(err, 1e-10)
        factor = self.safety * err ** (-1 / 3)
        if self._err_prev is not None and self._h_prev is not None:
            factor *= (h / self._h_prev) * (self._err_prev / err) ** (1 / 3)
        return min(self.max_growth, max(0.1, factor))

    @torch.no_grad()
    def _trial(self, h: float, s: int) -> tuple[Tensor, Tensor, float]:
        """One s-stage Lawson-RKC2 step (s = 1: Lawson–Euler) of size h from the last accepted
        point: (θ_{n+1}, ∇L(θ_{n+1}), error / tolerance); the error is inf if anything is not
        finite. In φ-space F(τ, φ) = −e^{λτ}·∇L(e^{−λτ}·φ), and F(0, θ_n) = −∇L(θ_n)."""
        lam, y0, g0 = self.weight_decay, self._theta, self._grad
        if s == 1:
            y = y0 - h * g0
        else:
            mu, nu, mus, gam, c = rkc_coefficients(s)
            y_prev, y = y0, y0 - (mus[1] * h) * g0
            for j in range(2, s + 1):
                tau = c[j - 1] * h
                g = self._grad_at(y * math.exp(-lam * tau))
                if not _finite(g):
                    return y0, g0, math.inf
                y_next = y0 * (1 - mu[j] - nu[j])
                y_next.add_(y, alpha=mu[j]).add_(y_prev, alpha=nu[j])
                y_next.add_(g, alpha=-mus[j] * h * math.exp(lam * tau))
                y_prev, y = y, y_next.add_(g0, alpha=-gam[j] * h)
        decay = math.exp(-lam * h)
        theta = y * decay
        grad = self._grad_at(theta)
        if not (_finite(grad) and _finite(theta)):
            return y0, g0, math.inf
        f_end = grad / decay  # −F(h, φ_{n+1})
        # Euler's leading error term for s = 1, rkc's Hermite-based estimate otherwise
        est = 0.5 * h * (g0 - f_end) if s == 1 else 0.8 * (y0 - y) - 0.4 * h * (g0 + f_end)
        tol = max(self._tolerance(y0), self._tolerance(theta))
        err = decay * est.norm().item() / tol
        before = self._value
        if before is not None and self.potential() - before > self.rtol * abs(before):
            err = max(err, 4.0)  # the potential rose: rejected, retried ~2x shorter
        return theta, grad, err

    def _tolerance(self, theta: Tensor) -> float:
        return self.atol + self.rtol * theta.norm().item()

    # ---- checkpointing ----

    _STATE = ("t", "h", "evaluations", "accepted", "rejected", "last_stages", "rho",
              "_rho_steps", "_rho_at", "_rho_cost", "_err_prev", "_h_prev", "_dfdt",
              "_eigvec", "_theta", "_grad", "_value")  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue identically (same steps, same counts):
        besides the scalars, the cached gradient at the current point, the copy of that point
        it belongs to, and the power iteration's eigenvector (three flat tensors)."""
        return {name.lstrip("_"): getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.params[0].device
        for name in self._STATE:
            value = state.get(name.lstrip("_"))  # (value: absent from older checkpoints)
            setattr(self, name, value.to(device) if isinstance(value, Tensor) else value)
