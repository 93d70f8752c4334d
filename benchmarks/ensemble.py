"""Throughput of K runs as one vectorized ensemble (grokkit.ensemble) against the same K runs one
after another, in this one process, on this machine.

Two workloads, each 16 whole ``grokkit fit`` runs (run directory, evaluation rows, phase
detection, checkpoint, summary; the configs' extra evaluation callbacks off, so that the number
measures training and the per-row bookkeeping every run has, not one callback's cost), members
differing in α, λ and the model seed:

* E5 at the paper's size (matrix completion, d = 97, configs/cpu/e5_matrix_completion.yaml):
  each step is a few hundred 97-vectors, so a run alone is bound by per-step overhead;
* E1 at the quickstart's size (diagonal net, d = 10^4, n = 256, configs/quickstart.yaml): each
  step's X·w is 5 MFLOP, already bound by arithmetic and memory bandwidth for one run; the
  ensemble turns K matrix-vector products into one matrix product X·W.

Each run is as long as its config makes it (trainer.max_steps: E5 30 000 steps, E1 60 000;
``--steps`` sets another length). Prints one line per workload, e.g. (2 cores,
docs/performance.md)::

    E5 d=97 K=16 steps=30000: sequential 398.7 s, vectorized 75.7 s, ratio 5.26 (gd steps
    1.3 -> 6.9 GFLOP/s), max per-member difference 1.3e-01 (12/16 members <= 1e-4; ...)

ratio: throughput vectorized / sequential; GFLOP/s: the gradient evaluations' arithmetic
(forward and backward, counted by hand) per second of the whole runs; max per-member
difference: the largest difference of any metrics.csv value between a member and its single
run, relative to that column's largest value; the members beyond 1e-4 are listed by (α, λ).

``--adaptive``: the same runs with the adaptive integrator (each to the flow time its gd run
would reach; GFLOP/s then counts its gradient evaluations). ``--grid``: the E1 paper grid
instead (sweeps/e1_alpha_wd_grid_paper.yaml: 36 runs at d = 10^5,
configs/paper/e1_sparse_grokking.yaml) as one batch; ``--gpu``: that grid on the GPU, vectorized
once with CUDA graphs (the default there) and once without. ``--sequential N`` times the
sequential side on the first N runs only and scales it to all (a run's cost does not depend on
how many came before it): the paper grid one after another is most of an hour.

    .venv/bin/python benchmarks/ensemble.py [--steps N] [--members 16] [--only E5]
    python benchmarks/ensemble.py --gpu --steps 20000 --sequential 4
"""

import argparse
import csv
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from grokkit import batching  # noqa: E402
from grokkit.cli import main  # noqa: E402
from grokkit.ensemble import run_members  # noqa: E402
from grokkit.rundir import read_summary  # noqa: E402

ALPHAS = (3, 10, 30)
WORKLOADS = {
    # name: (config, alphas, weight decays, flops of one gd step as a function of (n, d))
    "E5": (
        REPO / "configs" / "cpu" / "e5_matrix_completion.yaml",
        (3, 5, 10, 30),
        (0.0003, 0.0006, 0.0012, 0.0024),
        # 4 gathered rows of d and their products forward, twice that backward (scatter-add)
        lambda n, d: 3 * 4 * 2 * n * d,
    ),
    "E1": (
        REPO / "configs" / "quickstart.yaml",
        (16, 64, 256, 1024),
        (0.01, 0.02, 0.04, 0.08),
        # X·w forward, Xᵀr backward (2nd) and the elementwise u², v² terms
        lambda n, d: 2 * 2 * n * d + 10 * d,
    ),
}


def member_args(config: Path, alpha: float, decay: float, seed: int, steps: int, extra: list[str]):
    return [
        "--config",
        str(config),
        f"--model.alpha={alpha}",
        f"--model.weight_decay={decay}",
        f"--seed_everything={seed}",
        f"--trainer.max_steps={steps}",
        "--trainer.callbacks=[]",
        *extra,
    ]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def max_difference(a: Path, b: Path) -> float:
    """The largest difference between two runs' metrics.csv values, each relative to its
    column's range in the single run (max |value|): a loss of 1e-7 that differs by 1e-9
    is a curve that agrees, not a 1% error."""
    ra, rb = metrics(a), metrics(b)
    worst = 0.0
    for key in ra[0]:
        scale = max(abs(float(r[key])) for r in ra) or 1.0
        for x, y in zip(ra, rb, strict=True):
            u, v = float(x[key]), float(y[key])
            if u != v and not (math.isnan(u) and math.isnan(v)):
                worst = max(worst, abs(u - v) / scale)
    return worst


def peak_gflops(device: str) -> float:
    """A 1024² float32 matrix product's rate: what this machine's arithmetic reaches."""
    a = torch.randn(1024, 1024, device=device)
    a @ a
    start, n = time.perf_counter(), 10
    for _ in range(n):
        a @ a
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * 1024**3 * n / (time.perf_counter() - start) / 1e9


def measure(
    name: str,
    config: Path,
    points: list[tuple[float, float, int]],
    steps: int,
    extra: list[str],
    root: Path,
    sequential_members: int | None = None,
) -> tuple[str, float]:
    """One line for ``points`` (α, λ, seed) as sequential runs and as one ensemble, and the
    vectorized wall time. ``sequential_members``: the sequential side on the first N points only
    (its throughput per member is what the ratio compares; the per-member difference is over
    those N)."""
    flops = WORKLOADS[name][3]
    members = len(points)
    args = [member_args(config, a, wd, seed, steps, extra) for a, wd, seed in points]
    alone = args[: sequential_members or members]
    start = time.perf_counter()
    for i, a in enumerate(alone):
        code = main(["fit", *a, f"--run_dir={root / name / 'sequential' / str(i)}"])
        assert code == 0, f"sequential run {i} exited {code}"
    sequential = (time.perf_counter() - start) * members / len(alone)  # all K, one after another
    start = time.perf_counter()
    codes = run_members(
        [[*a, f"--run_dir={root / name / 'vectorized' / str(i)}"] for i, a in enumerate(args)]
    )
    vectorized = time.perf_counter() - start
    assert codes == [0] * members, codes
    differences = [
        max_difference(root / name / "sequential" / str(i), root / name / "vectorized" / str(i))
        for i in range(len(alone))
    ]
    worst, close = max(differences), sum(d <= 1e-4 for d in differences)
    apart = ", ".join(  # the members beyond rounding, as (α, λ): where to look
        f"α={points[i][0]:g} λ={points[i][1]:g}: {d:.1e}"
        for i, d in enumerate(differences)
        if d > 1e-4
    )
    d = _option(extra, "--data.d", 97 if name == "E5" else 10_000)
    n = _option(extra, "--data.n_train", 256) if name == "E1" else _e5_train_size(d)
    evaluations = sum(  # gd: one per step; adaptive: its stages, rejections and ρ probes
        read_summary(root / name / "vectorized" / str(i))["gradient_evaluations"]
        for i in range(members)
    )
    work = flops(n, d) * evaluations / 1e9
    extrapolated = "" if len(alone) == members else f" (from {len(alone)} runs)"
    adaptive = "--model.integrator=adaptive" in extra
    label = "gradient evaluations" if adaptive else "gd steps"
    return (
        f"{name}{' adaptive' if adaptive else ''} d={d} "
        f"K={members} steps={steps}: sequential {sequential:.1f} s{extrapolated}, "
        f"vectorized {vectorized:.1f} s, ratio {sequential / vectorized:.2f} ({label} "
        f"{work / sequential:.1f} -> {work / vectorized:.1f} GFLOP/s), max per-member "
        f"difference {worst:.1e} ({close}/{len(alone)} members <= 1e-4"
        + (f"; {apart})" if apart else ")"),
        vectorized,
    )


def _option(extra: list[str], key: str, default: int) -> int:
    given = [a.split("=", 1)[1] for a in extra if a.startswith(f"{key}=")]
    return int(given[-1]) if given else default


def _e5_train_size(d: int) -> int:
    return min(max(1, round(0.05 * d * d)), d * d - 1)


def config_steps(config: Path) -> int:
    """The config's own run length (its trainer.max_steps)."""
    return int(yaml.safe_load(config.read_text())["trainer"]["max_steps"])


GRID_STEPS = 3000  # the paper grid's own 2·10^6 steps are hours even on a GPU


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per run (default: each config's own trainer.max_steps, the runs it makes: "
        f"E5 30 000, E1 60 000; the grid {GRID_STEPS})",
    )
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    parser.add_argument("--grid", action="store_true", help="the E1 paper grid as one batch")
    parser.add_argument(
        "--adaptive", action="store_true", help="the adaptive integrator (to its horizon)"
    )
    parser.add_argument("--gpu", action="store_true", help="the E1 paper grid on the GPU")
    parser.add_argument("--d", type=int, default=100_000, help="the grid's d (default: paper's)")
    parser.add_argument(
        "--sequential", type=int, default=None, help="sequential side on the first N runs only"
    )
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    device = "cuda" if args.gpu else "cpu"
    print(
        f"torch threads {torch.get_num_threads()}; peak 1024^2 matmul "
        f"{peak_gflops(device):.0f} GFLOP/s on {device}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.grid or args.gpu:
            grid(args, root)
            return
        for name in [args.only] if args.only else list(WORKLOADS):
            config, alphas, decays, _ = WORKLOADS[name]
            points = [
                (alphas[i % len(alphas)], decays[i // len(alphas) % len(decays)], i)
                for i in range(args.members)
            ]
            extra = ["--model.integrator=adaptive"] if args.adaptive else []
            steps = args.steps or config_steps(config)
            line, _ = measure(name, config, points, steps, extra, root, args.sequential)
            print(line, flush=True)


def grid(args: argparse.Namespace, root: Path) -> None:
    """The E1 paper grid (sweeps/e1_alpha_wd_grid_paper.yaml: 4 α x 3 λ x 3 seeds, d = 10^5) as
    one batch; on a GPU also with its CUDA graphs off, for what the graphs bring."""
    points = [(a, wd, seed) for a in PAPER_ALPHAS for wd in PAPER_DECAYS for seed in (0, 1, 2)]
    extra = [f"--data.d={args.d}", f"--trainer.accelerator={'gpu' if args.gpu else 'cpu'}"]
    steps = args.steps or GRID_STEPS
    line, graphed = measure("E1", PAPER_E1, points, steps, extra, root, args.sequential)
    print(line + (" [CUDA graphs]" if args.gpu else ""), flush=True)
    if args.gpu:
        batching.CUDA_GRAPHS = False
        start = time.perf_counter()
        codes = run_members(
            [
                [
                    *member_args(PAPER_E1, a, wd, s, steps, extra),
                    f"--run_dir={root / f'eager{i}'}",
                ]
                for i, (a, wd, s) in enumerate(points)
            ]
        )
        assert codes == [0] * len(points), codes
        eager = time.perf_counter() - start
        same = max(
            max_difference(root / "E1" / "vectorized" / str(i), root / f"eager{i}")
            for i in range(len(points))
        )
        print(
            f"E1 grid without CUDA graphs: vectorized {eager:.1f} s (graphs: {graphed:.1f} s), "
            f"max difference graphs/eager {same:.1e}"
        )


PAPER_E1 = REPO / "configs" / "paper" / "e1_sparse_grokking.yaml"
PAPER_ALPHAS, PAPER_DECAYS = (16, 128, 1024, 8192), (0.001, 0.002, 0.004)


if __name__ == "__main__":
    main_bench()
