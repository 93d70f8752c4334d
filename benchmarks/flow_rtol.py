"""What the tolerance buys on E3's late phase (paper Fig. 2b, α = 10, λ = 1e-4), from a checkpoint.

After memorization, E3's two-layer ReLU net sits in a valley whose walls are ReLU kinks: the
gradient changes by jumps as pre-activations cross zero, not smoothly. Two measurements show it:
  kinks   the top eigenvalue of the smooth Hessian (autograd Hessian-vector products, which see
          no kink) against the secant ‖F(θ + δu) − F(θ)‖/δ along the flow's direction u, for
          moves δ from 1e-4 to 10: the secant is tens of times the smooth curvature at the
          scale of a step's move, and falls as δ grows past the valley's width.
  rtol    AdaptiveFlow from the same state over the same window of flow time at several rtol:
          evaluations per unit of λt, mean step h, mean stages, and the end state's distance
          from the tightest rtol's, relative to ‖θ‖. With a smooth field the cost would grow
          like rtol^(-1/3); here the error estimate sees the jumps and grows about like h, so
          the tolerance caps each step's move at ~rtol·‖θ‖ and the cost grows like 1/rtol.

    .venv/bin/python benchmarks/flow_rtol.py runs/figures/e3_alpha10_wd1e-4 [--window 0.2] [--euler]

  --euler  also a first-order Lawson–Euler controller (one evaluation per step), against the
           tightest RKC2 run: where kinks cap the step, does a higher order buy anything?

The run directory is a Fig. 2b α = 10 run (``grokkit figures --only 2b``, or its config with
``--model.integrator=adaptive``) stopped or finished anywhere after memorization.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from flow_methods import E3

from grokkit.integrators import AdaptiveFlow

Tensor = torch.Tensor
RTOLS = (1e-3, 1e-2, 3e-2)


def load(p: E3, run_dir: Path) -> float:
    """Put the run's last checkpoint into p.net; returns its flow time."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    p.net.load_state_dict({k[4:]: v for k, v in checkpoint["state_dict"].items()})
    return float(checkpoint["grokkit"]["flow_time"])


def field(p: E3, theta: Tensor) -> Tensor:
    """F(θ) = −∇L(θ) − λθ."""
    return -p.grad_flat(theta) - p.lam * theta


def smooth_curvature(p: E3, iterations: int = 30) -> float:
    """Top eigenvalue of the Hessian by power iteration on autograd Hessian-vector products."""
    v = [torch.randn_like(q) for q in p.params]
    top = 0.0
    for _ in range(iterations):
        norm = math.sqrt(sum(float((a * a).sum()) for a in v))
        v = [a / norm for a in v]
        loss = F.cross_entropy(p.net(p.x), p.y)
        grads = torch.autograd.grad(loss, p.params, create_graph=True)
        hv = torch.autograd.grad(grads, p.params, v)
        top = sum(float((a * b).sum()) for a, b in zip(hv, v, strict=True))
        v = [h.detach() for h in hv]
    return top


def run_kinks(p: E3) -> None:
    theta = p.flat()
    f0 = field(p, theta)
    u = f0 / f0.norm()
    print(f"‖θ‖ = {theta.norm():.2f}, ‖F‖ = {f0.norm():.3g}; {p.stats()}")
    print(f"smooth Hessian, top eigenvalue (autograd HVP): {smooth_curvature(p):.3g}")
    for delta in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0):
        secant = (field(p, theta + delta * u) - f0).norm().item() / delta
        print(f"  move δ = {delta:<6g} along F: ‖ΔF‖/δ = {secant:8.3g}")


def put(p: E3, theta: Tensor) -> None:
    with torch.no_grad():
        for q, chunk in zip(p.params, theta.split([q.numel() for q in p.params]), strict=True):
            q.copy_(chunk.view_as(q))


def run_rtols(p: E3, t0: float, window: float) -> Tensor:
    """AdaptiveFlow (RKC2) at each of RTOLS; returns the end state at the tightest."""
    theta0 = p.flat().clone()
    ends: list[Tensor] = []
    for rtol in RTOLS:
        put(p, theta0)
        flow = AdaptiveFlow(p.params, p.gradient, weight_decay=p.lam, rtol=rtol)
        stages, start = 0, time.perf_counter()
        while flow.t < window / p.lam:
            flow.step(window / p.lam)
            stages += flow.last_stages
        wall = time.perf_counter() - start
        ends.append(p.flat().clone())
        drift = (ends[-1] - ends[0]).norm().item() / ends[0].norm().item()
        print(
            f"rtol {rtol:<6g} λt {p.lam * t0:.3f}->{p.lam * (t0 + flow.t):.3f}: "
            f"{flow.evaluations:5d} evals ({flow.evaluations / window:7.0f} per unit λt), "
            f"mean h {flow.t / flow.accepted:7.2f}, mean stages {stages / flow.accepted:5.1f}, "
            f"{flow.rejected} rejected, {wall:5.0f} s; end state off rtol {RTOLS[0]:g}'s by "
            f"{drift:.2e}·‖θ‖; {p.stats()}",
            flush=True,
        )
    put(p, theta0)
    return ends[0]


def run_euler(p: E3, window: float, reference: Tensor) -> None:
    """A first-order alternative for a kinked field: Lawson–Euler steps, one evaluation each,
    error h/2·‖F_{n+1} − F_n‖ (free: F_{n+1} starts the next step), step factor
    0.9·err^(-1/2) clipped to [0.2, 5]. Drift is measured from RKC2's state at rtol 1e-3."""
    theta0, lam, horizon = p.flat().clone(), p.lam, window / p.lam
    for rtol in (1e-2, 3e-3, 1e-3):
        theta, grad = theta0.clone(), p.grad_flat(theta0)
        evals, t, h, accepted, rejected, start = 1, 0.0, 1.0, 0, 0, time.perf_counter()
        while t < horizon:
            h = min(h, horizon - t)
            decay = math.exp(-lam * h)
            trial = (theta - h * grad) * decay
            trial_grad = p.grad_flat(trial)
            evals += 1
            est = decay * (0.5 * h * (grad - trial_grad / decay)).norm().item()
            err = est / (rtol * max(theta.norm().item(), trial.norm().item()))
            if err <= 1:
                theta, grad, t, accepted = trial, trial_grad, t + h, accepted + 1
            else:
                rejected += 1
            h *= min(5.0, max(0.2, 0.9 * err**-0.5))
        put(p, theta)
        drift = (theta - reference).norm().item() / reference.norm().item()
        print(
            f"Euler rtol {rtol:<6g}: {evals:5d} evals ({evals / window:7.0f} per unit λt), "
            f"{accepted} accepted, {rejected} rejected, {time.perf_counter() - start:5.0f} s; end "
            f"state off RKC2 rtol {RTOLS[0]:g}'s by {drift:.2e}·‖θ‖; {p.stats()}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--window", type=float, default=0.2, help="λt covered at each rtol")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--euler", action="store_true", help="also adaptive Lawson-Euler steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.run_dir / "checkpoints" / "last.ckpt").is_file():
        sys.exit(f"flow_rtol: no checkpoints/last.ckpt in {args.run_dir}")
    p = E3()
    t0 = load(p, args.run_dir)
    print(f"E3 Fig. 2b α = 10 from {args.run_dir} at λt = {p.lam * t0:.3f}")
    run_kinks(p)
    reference = run_rtols(p, t0, args.window)
    if args.euler:
        run_euler(p, args.window, reference)


if __name__ == "__main__":
    main()
