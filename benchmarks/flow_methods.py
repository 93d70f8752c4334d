"""Gradient-flow integrators measured in plain PyTorch loops (no Lightning): which one should
``model.integrator: adaptive`` use?

Every method follows dθ/dt = −∇L(θ) − λθ (coupled weight decay) from θ0 = α·θ̄.

E1, the quickstart (configs/quickstart.yaml: d = 10^4, n = 256, k = 3, ‖θ0‖ = α = 128, λ = 1e-2,
logistic loss), from t = 0 to 600. One line per method:
  evals    gradient evaluations to t = 600, rejected trials and spectral-radius probes included
  wall     seconds of integration (test accuracy is computed outside the timer); ms/ev: per
           gradient evaluation, so a solver's own overhead shows against gd's
  t_grok   first t with test accuracy ≥ 0.95, linearly interpolated between the monitored points
           (every accepted step; every Δt = 0.5 of the libraries' dense output; every 10 GD steps)
  err300/err600  ‖θ(t) − θ_ref(t)‖/‖θ_ref(t)‖ against dopri5 in float64 at rtol 1e-10
  verdict  ok, or rejected (over 600 evaluations, or t_grok more than 2% from fixed-step GD's),
           or failed (an exception or a non-finite state)
E3 (``--e3``), paper Fig. 2b at its own scale (p = 97, 40% train, width 1024, W2 = 0, α = 10,
λ = 1e-4, cross-entropy): the stiff start (AdaptiveFlow from t = 0 to λt = 0.25), then, from that
same state, each method's gradient evaluations per unit of λt over a window (capped in
evaluations, to keep the whole E3 part to a few minutes of CPU).

E1 ensemble (``--ensemble``): K = 16 quickstart-sized E1 members, α ∈ {16, 64, 256, 1024} ×
λ ∈ {0.01, 0.02, 0.04, 0.08} (benchmarks/ensemble.py's E1 points), the same data, each from t = 0
to 600, every gradient evaluation one stacked computation over the members (vmap(grad)), in two
ways: our K AdaptiveFlows (rtol 1e-3, the default), each with its own step size, stages and time,
handing their evaluations to one ``grokkit.batching.Batcher`` from a thread each, as ``grokkit
ensemble`` runs them (a finished member leaves, later rounds are smaller); and one batched
torchode problem, y of shape (K, P), a step size, time and error test per member (Tsit5, Heun;
rtol 1e-3, atol 1e-6 as above), whose every round evaluates all K members, finished ones too.
One line per way:
  rounds        stacked gradient computations (torchode's n_f_evals, the same for every member)
  wall          seconds of integration (test accuracy is computed outside the timer)
  member evals  member gradients computed, summed; in brackets those for a member still
                integrating (torchode: 2 + new stages per step × its n_steps, rejected included)
  t_grok err    max over members of |t_grok / t_grok,ref − 1| (t_grok as above: accepted steps;
                torchode's dense output every Δt = 1)
  θ(T) err      max over members of ‖θ(T) − θ_ref(T)‖/‖θ_ref(T)‖
where ref is a float64 torchode dopri5 at rtol 1e-9 with ``--ensemble-reference`` (the
costliest line), else the first line; then a line per member.
``--ensemble-members K`` takes the first K points, ``--t-max`` shortens the ensemble's horizon.

    .venv/bin/python benchmarks/flow_methods.py [--e3] [--no-e1] [--skip-gd] [--threads N]
        [--ensemble [--ensemble-members K] [--t-max T] [--ensemble-reference]]

torchdiffeq and torchode are optional (``pip install torchdiffeq torchode``); a method whose
library is missing prints as failed.
"""

import argparse
import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from grokkit.batching import Batcher, pin_threads, stacking
from grokkit.data import ModularArithmeticData, SparseLinearData
from grokkit.integrators import AdaptiveFlow
from grokkit.models import DiagonalNet, TwoLayerReLU
from grokkit.objectives import logistic_loss

Tensor = torch.Tensor
Field = Callable[[Tensor], Tensor]  # flat θ ↦ ∇L(θ) (no weight decay)

E1_T, E1_LAM, E1_ALPHA, E1_GD_LR = 600.0, 1e-2, 128.0, 0.01
MAX_EVALS, T_GROK_TOL, THRESHOLD = 600, 0.02, 0.95


class Counter:
    """Wraps a gradient field and counts its calls."""

    def __init__(self, field: Field) -> None:
        self.field, self.calls = field, 0

    def __call__(self, theta: Tensor) -> Tensor:
        self.calls += 1
        return self.field(theta)


@dataclass
class Row:
    name: str
    evals: int = 0
    wall: float = math.nan
    t_grok: float | None = None
    errors: tuple[float, ...] = ()
    failure: str = ""


# ---------------------------------------------------------------- E1 problem


class E1:
    def __init__(self) -> None:
        data = SparseLinearData(d=10_000, k=3, n_train=256, n_test=2000, seed=0)
        data.setup()
        (self.x, self.y), (self.xt, self.yt) = data.splits["train"], data.splits["test"]
        self.d = self.x.shape[1]
        net = DiagonalNet(self.d)
        net.scale_init_(E1_ALPHA)
        self.theta0 = torch.cat([net.u.detach(), net.v.detach()])

    def grad(self, theta: Tensor) -> Tensor:
        with torch.enable_grad():
            theta = theta.detach().requires_grad_(True)
            u, v = theta[: self.d], theta[self.d :]
            x, y = (self.x, self.y) if theta.dtype == self.x.dtype else (self.x64, self.y64)
            (g,) = torch.autograd.grad(logistic_loss(x @ (u * u - v * v), y), theta)
        return g

    def test_acc(self, theta: Tensor) -> float:
        """Test accuracy with ties counted ½, in float64 (0.95 is not a float32)."""
        u, v = theta[: self.d].float(), theta[self.d :].float()
        margin = self.yt * (self.xt @ (u * u - v * v))
        return ((margin > 0).double() + 0.5 * (margin == 0).double()).mean().item()

    def reference(self) -> tuple[Tensor, Tensor]:
        """θ(300), θ(600) by dopri5 in float64 at rtol 1e-10 (needs torchdiffeq)."""
        import torchdiffeq

        self.x64, self.y64 = self.x.double(), self.y.double()
        sol = torchdiffeq.odeint(
            lambda t, th: -self.grad(th) - E1_LAM * th,
            self.theta0.double(),
            torch.tensor([0.0, 300.0, 600.0], dtype=torch.float64),
            method="dopri5",
            rtol=1e-10,
            atol=1e-13,
        )
        return sol[1].float(), sol[2].float()


def crossing(ts: list[float], accs: list[float]) -> float | None:
    for i in range(1, len(ts)):
        if accs[i] >= THRESHOLD > accs[i - 1]:
            return ts[i - 1] + (THRESHOLD - accs[i - 1]) / (accs[i] - accs[i - 1]) * (
                ts[i] - ts[i - 1]
            )
    return None


def rel_err(theta: Tensor, ref: Tensor) -> float:
    return ((theta.float() - ref).norm() / ref.norm()).item()


# ---------------------------------------------------------------- E1 methods


def e1_gd(p: E1, refs: tuple[Tensor, Tensor]) -> Row:
    """Fixed-step gradient descent, the paper's algorithm, at η = 0.01 (60 000 steps)."""
    field, theta = Counter(p.grad), p.theta0.clone()
    steps = round(E1_T / E1_GD_LR)
    ts, accs, errors, wall = [0.0], [p.test_acc(theta)], [], 0.0
    for k in range(1, steps + 1):
        start = time.perf_counter()
        theta = theta - E1_GD_LR * (field(theta) + E1_LAM * theta)
        wall += time.perf_counter() - start
        if k % 10 == 0:
            ts.append(k * E1_GD_LR)
            accs.append(p.test_acc(theta))
        if k in (steps // 2, steps):
            errors.append(rel_err(theta, refs[len(errors)]))
    return Row(f"gd eta={E1_GD_LR}", field.calls, wall, crossing(ts, accs), tuple(errors))


def e1_heun_euler(p: E1, refs: tuple[Tensor, Tensor], rtol: float) -> Row:
    """The floor to beat: a textbook Heun–Euler pair, err = ‖θ_Heun − θ_Euler‖ ≤ rtol·‖θ‖,
    factor 0.9·err^(−1/2) clipped to [0.2, 5], Heun propagated (2 evaluations per step)."""
    field, theta, t, h = Counter(p.grad), p.theta0.clone(), 0.0, 1e-3
    ts, accs, errors, wall = [0.0], [p.test_acc(theta)], [], 0.0
    start = time.perf_counter()
    f0 = -field(theta) - E1_LAM * theta
    for target in (300.0, E1_T):
        while t < target:
            h = min(h, target - t)
            euler = theta + h * f0
            f1 = -field(euler) - E1_LAM * euler
            err = (0.5 * h * (f1 - f0)).norm().item() / (rtol * theta.norm().item())
            if not math.isfinite(err) or err > 1:
                h *= max(0.2, 0.9 * err**-0.5) if math.isfinite(err) else 0.2
                continue
            theta = theta + 0.5 * h * (f0 + f1)
            f0 = -field(theta) - E1_LAM * theta
            t = t + h if target - t > h else target
            wall += time.perf_counter() - start
            ts.append(t)
            accs.append(p.test_acc(theta))
            start = time.perf_counter()
            h *= min(5.0, 0.9 * max(err, 1e-10) ** -0.5)
        errors.append(rel_err(theta, refs[len(errors)]))
    return Row(f"heun-euler textbook rtol={rtol:g}", field.calls, wall, crossing(ts, accs),
               tuple(errors))  # fmt: skip


def e1_adaptive(p: E1, refs: tuple[Tensor, Tensor], rtol: float, points: int = 0) -> Row:
    """grokkit.integrators.AdaptiveFlow, on the net's own parameter tensors. With ``points``,
    it also lands on that many log-spaced evaluation times in [0.01, 600] (as GrokTask will)."""
    d = p.d
    u, v = p.theta0[:d].clone(), p.theta0[d:].clone()

    def gradient() -> tuple[Tensor, ...]:
        uu, vv = u.detach().requires_grad_(True), v.detach().requires_grad_(True)
        return torch.autograd.grad(logistic_loss(p.x @ (uu * uu - vv * vv), p.y), (uu, vv))

    flow = AdaptiveFlow([u, v], gradient, weight_decay=E1_LAM, rtol=rtol)
    stops = sorted({300.0, E1_T, *(torch.logspace(-2, math.log10(E1_T), points).tolist())})
    ts, accs, errors, wall = [0.0], [p.test_acc(p.theta0)], [], 0.0
    for target in stops:
        while flow.t < target:
            start = time.perf_counter()
            flow.step(target)
            wall += time.perf_counter() - start
            ts.append(flow.t)
            accs.append(p.test_acc(torch.cat([u, v])))
        if target in (300.0, E1_T):
            errors.append(rel_err(torch.cat([u, v]), refs[len(errors)]))
    name = f"AdaptiveFlow (RKC2) rtol={rtol:g}" + (f", lands on {points} points" if points else "")
    return Row(name, flow.evaluations, wall, crossing(ts, accs), tuple(errors))


def dense_row(p: E1, refs: tuple[Tensor, Tensor], name: str, grid: Tensor, sol: Tensor,
              field: Counter, wall: float) -> Row:  # fmt: skip
    if not torch.isfinite(sol).all():
        return Row(name, field.calls, wall, failure="non-finite state")
    accs = [p.test_acc(s) for s in sol]
    at = {round(t, 6): i for i, t in enumerate(grid.tolist())}
    errors = (rel_err(sol[at[300.0]], refs[0]), rel_err(sol[at[E1_T]], refs[1]))
    return Row(name, field.calls, wall, crossing(grid.tolist(), accs), errors)


def e1_torchdiffeq(p: E1, refs: tuple[Tensor, Tensor], method: str, rtol: float,
                   atol: float) -> Row:  # fmt: skip
    import torchdiffeq

    field, grid = Counter(p.grad), torch.linspace(0.0, E1_T, 1201)
    start = time.perf_counter()
    sol = torchdiffeq.odeint(lambda t, th: -field(th) - E1_LAM * th, p.theta0, grid,
                             method=method, rtol=rtol, atol=atol)  # fmt: skip
    wall = time.perf_counter() - start
    return dense_row(p, refs, f"torchdiffeq {method} rtol={rtol:g} atol={atol:g}", grid, sol,
                     field, wall)  # fmt: skip


def e1_torchode(p: E1, refs: tuple[Tensor, Tensor], method: str, rtol: float,
                atol: float) -> Row:  # fmt: skip
    """torchode solves a batch with a step size per member: the flat θ is a batch of one."""
    import torchode

    field, grid = Counter(p.grad), torch.linspace(0.0, E1_T, 1201)
    term = torchode.ODETerm(lambda t, y: (-field(y[0]) - E1_LAM * y[0])[None])
    stepper = {"dopri5": torchode.Dopri5, "tsit5": torchode.Tsit5, "heun": torchode.Heun}[method]
    controller = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = torchode.AutoDiffAdjoint(stepper(term=term), controller)
    problem = torchode.InitialValueProblem(
        y0=p.theta0[None], t_start=grid[:1], t_end=grid[-1:], t_eval=grid[None]
    )
    start = time.perf_counter()
    sol = solver.solve(problem)
    wall = time.perf_counter() - start
    return dense_row(p, refs, f"torchode {method} rtol={rtol:g} atol={atol:g}", grid,
                     sol.ys[0], field, wall)  # fmt: skip


def guarded(name: str, run: Callable[[], Row]) -> Row:
    try:
        return run()
    except Exception as exc:  # a method that cannot run is a result too
        return Row(name, failure=f"{type(exc).__name__}: {exc}"[:80])


def verdict(row: Row, t_gd: float | None) -> str:
    if row.failure:
        return f"failed ({row.failure})"
    why = []
    if row.evals > MAX_EVALS:
        why.append(f"> {MAX_EVALS} evals")
    if row.t_grok is None:
        why.append("never groks")
    elif t_gd is not None and abs(row.t_grok / t_gd - 1) > T_GROK_TOL:
        why.append(f"t_grok off by {100 * (row.t_grok / t_gd - 1):+.1f}%")
    return "rejected (" + ", ".join(why) + ")" if why else "ok"


def print_e1(rows: list[Row], t_gd: float | None) -> None:
    print(f"{'E1 method':52s} {'evals':>6s} {'wall s':>7s} {'ms/ev':>6s} {'t_grok':>7s} "
          f"{'vs gd':>7s} {'err300':>8s} {'err600':>8s}  verdict")  # fmt: skip
    for r in rows:
        tg = f"{r.t_grok:7.1f}" if r.t_grok is not None else "      -"
        rel = f"{100 * (r.t_grok / t_gd - 1):+6.2f}%" if r.t_grok and t_gd else "      -"
        errs = " ".join(f"{e:8.1e}" for e in r.errors) if r.errors else f"{'-':>8s} {'-':>8s}"
        gd = r.name.startswith("gd ")
        per = f"{1e3 * r.wall / r.evals:6.2f}" if r.evals else "     -"
        print(f"{r.name:52s} {r.evals:6d} {r.wall:7.2f} {per} {tg} {rel} {errs}  "
              f"{'reference' if gd else verdict(r, t_gd)}", flush=True)  # fmt: skip


def run_e1(skip_gd: bool) -> None:
    p = E1()
    refs = p.reference()
    start = time.perf_counter()
    for _ in range(50):
        p.grad(p.theta0)
    print(f"E1: one gradient evaluation {1e3 * (time.perf_counter() - start) / 50:.2f} ms")
    rows: list[Row] = []
    t_gd = None
    if not skip_gd:
        rows.append(e1_gd(p, refs))
        t_gd = rows[-1].t_grok
    tiny = 1e-6
    runs: list[tuple[str, Callable[[], Row]]] = [
        ("heun-euler textbook", lambda: e1_heun_euler(p, refs, 1e-3)),
        *[(f"td {m}", lambda m=m: e1_torchdiffeq(p, refs, m, 1e-3, tiny))
          for m in ("dopri5", "bosh3", "adaptive_heun")],
        ("td adaptive_heun 1e-2", lambda: e1_torchdiffeq(p, refs, "adaptive_heun", 1e-2, tiny)),
        *[(f"torchode {m}", lambda m=m: e1_torchode(p, refs, m, 1e-3, tiny))
          for m in ("dopri5", "tsit5", "heun")],
        *[(f"adaptive {r}", lambda r=r: e1_adaptive(p, refs, r)) for r in (1e-2, 1e-3, 1e-4)],
        *[(f"adaptive landing {r}", lambda r=r: e1_adaptive(p, refs, r, points=300))
          for r in (1e-2, 1e-3)],
    ]  # fmt: skip
    for name, run in runs:
        rows.append(guarded(name, run))
    print_e1(rows, t_gd)


# ---------------------------------------------------------------- E3 problem


class E3:
    """Paper Fig. 2b, α = 10 (configs/paper/e3_modular_fig2b_alpha10.yaml)."""

    lam = 1e-4

    def __init__(self) -> None:
        data = ModularArithmeticData(p=97, operation="add", train_fraction=0.4, seed=0)
        data.setup()
        (self.x, self.y), (self.xt, self.yt) = data.splits["train"], data.splits["test"]
        torch.manual_seed(0)  # seed_everything: 0
        self.net = TwoLayerReLU(97, width=1024, zero_last_layer=True)
        self.net.scale_init_(10.0)
        self.params = list(self.net.parameters())
        self.names = [n for n, _ in self.net.named_parameters()]

    def gradient(self) -> tuple[Tensor, ...]:
        return torch.autograd.grad(F.cross_entropy(self.net(self.x), self.y), self.params)

    def flat(self) -> Tensor:
        return torch.cat([q.detach().flatten() for q in self.params])

    def grad_flat(self, theta: Tensor) -> Tensor:
        chunks = theta.split([q.numel() for q in self.params])
        named = {n: c.view_as(q) for n, c, q in zip(self.names, chunks, self.params, strict=True)}
        with torch.enable_grad():
            leaves = {n: c.detach().requires_grad_(True) for n, c in named.items()}
            out = torch.func.functional_call(self.net, leaves, (self.x,))
            grads = torch.autograd.grad(F.cross_entropy(out, self.y), list(leaves.values()))
        return torch.cat([g.flatten() for g in grads])

    @torch.no_grad()
    def stats(self) -> str:
        out, out_t = self.net(self.x), self.net(self.xt)
        acc = (out.argmax(1) == self.y).double().mean().item()
        acc_t = (out_t.argmax(1) == self.yt).double().mean().item()
        return (
            f"train loss {F.cross_entropy(out, self.y).item():.4f} acc {acc:.4f} test {acc_t:.4f}"
        )


class _BudgetSpent(Exception):
    pass


def e3_classical(p: E3, theta: Tensor, kind: str, window: float, cap: int) -> tuple[int, float]:
    """(evaluations, flow time covered) of a classical method from θ over ``window``, stopped
    once ``cap`` evaluations are spent."""
    field = Counter(p.grad_flat)
    if kind == "heun-euler":  # the textbook pair of e1_heun_euler, on E3
        t, h, th = 0.0, 1.0, theta.clone()
        f0 = -field(th) - p.lam * th
        while t < window and field.calls < cap:
            euler = th + h * f0
            f1 = -field(euler) - p.lam * euler
            err = (0.5 * h * (f1 - f0)).norm().item() / (1e-3 * th.norm().item())
            if not math.isfinite(err) or err > 1:
                h *= max(0.2, 0.9 * err**-0.5) if math.isfinite(err) else 0.2
                continue
            th = th + 0.5 * h * (f0 + f1)
            f0 = -field(th) - p.lam * th
            t += h
            h *= min(5.0, 0.9 * max(err, 1e-10) ** -0.5)
        return field.calls, t
    import torchdiffeq

    reached = [0.0]

    def rhs(t: Tensor, th: Tensor) -> Tensor:
        if field.calls >= cap:
            raise _BudgetSpent
        reached[0] = max(reached[0], float(t))
        return -field(th) - p.lam * th

    with contextlib.suppress(_BudgetSpent):
        torchdiffeq.odeint(rhs, theta, torch.tensor([0.0, window]), method=kind,
                           rtol=1e-3, atol=1e-6)  # fmt: skip
    return field.calls, reached[0]


def e3_line(name: str, lt0: float, evals: int, covered_lt: float, wall: float, note: str) -> str:
    rate = evals / covered_lt if covered_lt > 0 else math.inf
    return (f"{name:40s} λt {lt0:.2f}->{lt0 + covered_lt:.4f}: {evals:5d} evals, "
            f"{rate:7.0f} per unit λt, {wall:4.0f} s  {note}")  # fmt: skip


def run_e3() -> None:
    p = E3()
    start = time.perf_counter()
    for _ in range(5):
        p.gradient()
    print(f"\nE3: one gradient evaluation {1e3 * (time.perf_counter() - start) / 5:.0f} ms")
    flow = AdaptiveFlow(p.params, p.gradient, weight_decay=p.lam, rtol=1e-3)
    start = time.perf_counter()
    for lt in (0.01, 0.03, 0.1, 0.25):  # the start
        flow.advance_to(lt / p.lam)
        print(e3_line("AdaptiveFlow rtol=1e-3 (start)", 0.0, flow.evaluations, lt,
                      time.perf_counter() - start,
                      f"{flow.rejected} rejected, {flow.accepted} steps, s={flow.last_stages}, "
                      f"ρ≈{flow.rho:.3g}; {p.stats()}"), flush=True)  # fmt: skip
    lt0, theta = p.lam * flow.t, p.flat()
    for name, kind in [
        ("textbook Heun-Euler rtol=1e-3", "heun-euler"),
        ("torchdiffeq adaptive_heun rtol=1e-3", "adaptive_heun"),
        ("torchdiffeq bosh3 rtol=1e-3", "bosh3"),
        ("torchdiffeq dopri5 rtol=1e-3", "dopri5"),
    ]:
        start = time.perf_counter()
        try:
            evals, covered = e3_classical(p, theta, kind, window=500.0, cap=250)
        except Exception as exc:
            print(f"{name:40s} failed ({type(exc).__name__}: {exc})"[:120], flush=True)
            continue
        wall = time.perf_counter() - start
        print(e3_line(name, lt0, evals, p.lam * covered, wall, "(cap 250 evaluations)"),
              flush=True)  # fmt: skip
    before, start = flow.evaluations, time.perf_counter()
    flow.advance_to(0.5 / p.lam)
    print(e3_line("AdaptiveFlow rtol=1e-3", lt0, flow.evaluations - before, 0.5 - lt0,
                  time.perf_counter() - start, f"s={flow.last_stages}; {p.stats()}"))  # fmt: skip


# ---------------------------------------------------------------- E1 ensemble

ENS_ALPHAS, ENS_DECAYS = (16.0, 64.0, 256.0, 1024.0), (0.01, 0.02, 0.04, 0.08)
ENS_GRID = 1.0  # torchode's dense output: test accuracy every Δt = 1
ENS_MAX_STEPS = 5_000  # torchode gives up after a member has taken this many (its max_steps)


@dataclass(eq=False)
class _Member:
    """What ``grokkit.batching.Batcher`` reads of a task (a run without Lightning)."""

    net: DiagonalNet
    hparams: SimpleNamespace
    objective: SimpleNamespace
    stop_requested: bool = False


@dataclass
class EnsembleRow:
    name: str
    rounds: int = 0  # stacked gradient computations
    computed: int = 0  # member gradients computed, summed (rounds × members in a round)
    useful: int = 0  # of them, for a member still integrating (torchode evaluates all K)
    wall: float = math.nan
    t_grok: list[float | None] = field(default_factory=list)
    final: Tensor | None = None  # (K, P): θ at the horizon
    steps: list[int] = field(default_factory=list)  # per member: accepted steps
    evals: list[int] = field(default_factory=list)  # per member: evaluations while integrating
    failure: str = ""


class E1Ensemble:
    """K quickstart-sized E1 members (benchmarks/ensemble.py's 16 points of α × λ, in its order:
    α varies fastest), the same data, each from t = 0 to ``t_max``, in ``dtype``."""

    def __init__(self, p: E1, members: int, t_max: float, dtype: torch.dtype = torch.float32):
        self.p, self.t_max = p, t_max
        self.x, self.y = p.x.to(dtype), p.y.to(dtype)
        self.points = [(ENS_ALPHAS[i % 4], ENS_DECAYS[i // 4 % 4]) for i in range(members)]
        self.lam = torch.tensor([[lam] for _, lam in self.points], dtype=dtype)  # (K, 1)
        theta0 = [p.theta0.to(dtype) * (a / E1_ALPHA) for a, _ in self.points]
        self.theta0 = torch.stack(theta0)
        # the stacked ∇L of grokkit's ensembles (vmap(grad) of the net run functionally)
        self.gradient = stacking(DiagonalNet(p.d), "logistic", logistic_loss).gradient

    def rhs(self, theta: Tensor) -> Tensor:
        """−∇L_k(θ_k) − λ_k·θ_k for all members at once: (K, P) ↦ (K, P), one vmap(grad)."""
        d = self.p.d
        g = self.gradient({"u": theta[:, :d], "v": theta[:, d:]}, {}, self.x, self.y)
        return -torch.cat([g["u"], g["v"]], dim=1) - self.lam * theta

    def t_grok(self, ts: list[float], ws: Tensor) -> float | None:
        """Grokking time of one member from its effective weights w = u² − v² at times ts."""
        margin = self.p.yt * (ws.float() @ self.p.xt.T)  # (len(ts), n_test)
        accs = ((margin > 0).double() + 0.5 * (margin == 0).double()).mean(1)
        return crossing(ts, accs.tolist())


def ensemble_torchode(ens: E1Ensemble, method: str, rtol: float, atol: float) -> EnsembleRow:
    """One batched torchode problem, y of shape (K, P): a step size, time and error test per
    member; every round of the loop evaluates the field of all K members (finished or rejected
    ones too), as one stacked computation."""
    import torchode

    name = f"torchode {method} batched rtol={rtol:g} atol={atol:g}"
    rhs = Counter(ens.rhs)
    k, d = len(ens.points), ens.p.d
    grid = torch.arange(0.0, ens.t_max + ENS_GRID / 2, ENS_GRID)
    term = torchode.ODETerm(lambda t, y: rhs(y))
    stepper = {"dopri5": torchode.Dopri5, "tsit5": torchode.Tsit5, "heun": torchode.Heun}[method]
    step_method = stepper(term=term)
    controller = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = torchode.AutoDiffAdjoint(step_method, controller, max_steps=ENS_MAX_STEPS)
    problem = torchode.InitialValueProblem(
        y0=ens.theta0, t_start=grid[:1].expand(k), t_end=grid[-1:].expand(k),
        t_eval=grid.expand(k, -1),
    )  # fmt: skip
    start = time.perf_counter()
    with torch.no_grad():
        sol = solver.solve(problem)
    wall = time.perf_counter() - start
    tableau = step_method.tableau
    per_step = tableau.n_stages - int(tableau.fsal)  # new evaluations per step
    steps = sol.stats["n_steps"]  # per member, accepted and rejected, while it ran
    evals = (2 + per_step * steps).tolist()  # Hairer's initial-step rule takes 2
    row = EnsembleRow(name, rhs.calls, rhs.calls * k, sum(evals), wall,
                      steps=sol.stats["n_accepted"].tolist(), evals=evals)  # fmt: skip
    assert int(sol.stats["n_f_evals"][0]) == rhs.calls  # each member counts every round
    filled = sol.stats["n_initialized"].tolist()
    row.t_grok = [
        ens.t_grok(grid[:n].tolist(), ys[:n, :d] ** 2 - ys[:n, d:] ** 2)
        for ys, n in zip(sol.ys, filled, strict=True)
    ]
    if (sol.status != 0).any() or min(filled) < len(grid):
        reached = min(grid[max(n - 1, 0)].item() for n in filled)
        row.failure = f"status {sol.status.unique().tolist()}, t reached {reached:g}"
    elif not torch.isfinite(sol.ys[:, -1]).all():
        row.failure = "non-finite state"
    else:
        row.final = sol.ys[:, -1].clone()
    return row


def ensemble_adaptive(ens: E1Ensemble, rtol: float) -> EnsembleRow:
    """K AdaptiveFlow integrators, each with its own step size, stages, time and rejections,
    every gradient evaluation handed to one ``grokkit.batching.Batcher``, which evaluates those
    of all live members as one stacked computation (as in ``grokkit ensemble``): a thread per
    member; a finished member leaves, and later rounds are smaller."""
    k, d = len(ens.points), ens.p.d
    batcher = Batcher(k)
    hparams = SimpleNamespace(integrator="adaptive", optimizer="sgd", batch_size=None,
                              lr_normalize_by_loss=False, loss="logistic")  # fmt: skip
    members, flows = [], []
    for theta0, (_, lam) in zip(ens.theta0, ens.points, strict=True):
        net = DiagonalNet(d).to(ens.x.dtype)
        with torch.no_grad():
            net.u.copy_(theta0[:d])
            net.v.copy_(theta0[d:])
        member = _Member(net, hparams, SimpleNamespace(loss=logistic_loss))
        gradient = partial(batcher.gradient, member, ens.x, ens.y)
        members.append(member)
        flows.append(AdaptiveFlow(list(net.parameters()), gradient, weight_decay=lam, rtol=rtol))
    traces: list[list[tuple[float, Tensor]]] = [[] for _ in range(k)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        flow, net = flows[i], members[i].net
        pin_threads(1)  # as grokkit ensemble: the stacked rounds run on the serving thread
        try:
            traces[i].append((0.0, net.effective_weight().detach()))
            while flow.t < ens.t_max:
                flow.step(ens.t_max)
                traces[i].append((flow.t, net.effective_weight().detach()))
        except BaseException as exc:  # noqa: BLE001 — re-raised in the main thread
            errors.append(exc)
        finally:
            batcher.leave()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    batcher.serve(torch.get_num_threads())
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    evals = [f.evaluations for f in flows]
    row = EnsembleRow(f"AdaptiveFlow x{k} + Batcher rtol={rtol:g}", batcher.batches, sum(evals),
                      sum(evals), wall, steps=[f.accepted for f in flows], evals=evals)  # fmt: skip
    row.t_grok = [ens.t_grok([t for t, _ in tr], torch.stack([w for _, w in tr])) for tr in traces]
    row.final = torch.stack([torch.cat([m.net.u, m.net.v]).detach() for m in members])
    return row


def max_rel_diff(a: list[float | None], b: list[float | None]) -> str:
    """max over members of |a/b − 1| (members where either never groks are left out)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    skipped = len(a) - len(pairs)
    worst = f"{100 * max(abs(x / y - 1) for x, y in pairs):.2f}%" if pairs else "-"
    return worst + (f" ({skipped} never)" if skipped else "")


def run_ensemble(members: int, t_max: float, reference: bool) -> None:
    """--ensemble: K AdaptiveFlows on one Batcher against batched torchode solves; errors are
    measured against a float64 torchode dopri5 at rtol 1e-9 (``reference``), or else against
    the first line (AdaptiveFlow)."""
    p = E1()
    ens = E1Ensemble(p, members, t_max)
    start = time.perf_counter()
    for _ in range(10):
        ens.rhs(ens.theta0)
    per_round = 1e3 * (time.perf_counter() - start) / 10
    print(f"\nE1 ensemble: K={members} members to t={t_max:g}; one stacked gradient of all K "
          f"{per_round:.1f} ms")  # fmt: skip
    runs: list[tuple[str, Callable[[], EnsembleRow]]] = [
        ("AdaptiveFlow", lambda: ensemble_adaptive(ens, 1e-3)),
        *[(f"torchode {m}", lambda m=m: ensemble_torchode(ens, m, 1e-3, 1e-6))
          for m in ("tsit5", "heun")],
    ]  # fmt: skip
    if reference:
        ens64 = E1Ensemble(p, members, t_max, torch.float64)
        runs.append(("reference", lambda: ensemble_torchode(ens64, "dopri5", 1e-9, 1e-12)))
    rows = []
    for name, run in runs:
        try:
            rows.append(run())
        except Exception as exc:  # a method that cannot run is a result too
            rows.append(EnsembleRow(name, failure=f"{type(exc).__name__}: {exc}"[:80]))
    ref = rows[-1] if reference and rows[-1].final is not None else rows[0]
    print(f"errors against: {ref.name}")
    print(f"{'E1 ensemble method':44s} {'rounds':>6s} {'member evals':>17s} {'wall s':>7s} "
          f"{'max t_grok err':>15s} {'max θ(T) err':>12s}")  # fmt: skip
    errors = []
    for r in rows:
        errors.append([math.nan] * members)
        if r.final is not None and ref.final is not None:
            errors[-1] = (r.final.double() - ref.final.double()).norm(dim=1).div(
                ref.final.double().norm(dim=1)).tolist()  # fmt: skip
        if r.failure and r.final is None and not r.t_grok:
            print(f"{r.name:44s} failed ({r.failure})", flush=True)
            continue
        tg = max_rel_diff(r.t_grok, ref.t_grok) if ref.t_grok else "-"
        evals = f"{r.computed} ({r.useful})"
        print(f"{r.name:44s} {r.rounds:6d} {evals:>17s} {r.wall:7.2f} {tg:>15s} "
              f"{max(errors[-1]):12.1e}" + (f"  failed ({r.failure})" if r.failure else ""),
              flush=True)  # fmt: skip
    print("per member: alpha lambda | t_grok, accepted steps/evaluations while integrating, "
          "θ(T) err of each line above that ran")  # fmt: skip
    for i, (alpha, lam) in enumerate(ens.points):
        cells = [
            (f"{r.t_grok[i]:6.1f}" if r.t_grok and r.t_grok[i] is not None else f"{'never':>6s}")
            + f" {r.steps[i]:4d}/{r.evals[i]:<5d}{err[i]:7.1e}"
            for r, err in zip(rows, errors, strict=True)
            if r.t_grok
        ]
        print(f"  {alpha:6g} {lam:5g} | " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--e3", action="store_true", help="also measure E3's start (minutes)")
    parser.add_argument("--skip-gd", action="store_true", help="skip the 60 000-step GD run")
    parser.add_argument("--no-e1", action="store_true", help="skip E1")
    parser.add_argument("--ensemble", action="store_true", help="also measure the E1 ensemble")
    parser.add_argument("--ensemble-members", type=int, default=16, help="K (1 to 16)")
    parser.add_argument(
        "--ensemble-reference", action="store_true", help="float64 dopri5 rtol 1e-9 reference"
    )
    parser.add_argument("--t-max", type=float, default=E1_T, help="the ensemble's horizon")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if not 1 <= args.ensemble_members <= len(ENS_ALPHAS) * len(ENS_DECAYS):
        parser.error("--ensemble-members must be between 1 and 16")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_e1:
        run_e1(args.skip_gd)
    if args.e3:
        run_e3()
    if args.ensemble:
        run_ensemble(args.ensemble_members, args.t_max, args.ensemble_reference)


if __name__ == "__main__":
    main()
