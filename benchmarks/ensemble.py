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

Prints one line per workload::

    E5 d=97 K=16 steps=3000: sequential 41.2 s, vectorized 6.1 s, ratio 6.75 (gd steps 0.9 ->
    6.3 GFLOP/s; peak 1024^2 matmul 60 GFLOP/s), max per-member difference 3e-07

ratio: throughput vectorized / sequential; GFLOP/s: the gradient steps' arithmetic (forward and
backward, counted by hand) per second of the whole runs; max per-member difference: the largest
relative difference of any metrics.csv value between a member and its single run.

On a GPU (``--gpu``): the E1 paper grid (d = 10^5, 36 runs, configs/paper/e1_sparse_grokking.yaml)
as one batch, sequential against vectorized over ``--steps``.

    .venv/bin/python benchmarks/ensemble.py [--steps 3000] [--members 16] [--only E5]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from grokkit.cli import main  # noqa: E402
from grokkit.ensemble import run_members  # noqa: E402

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


def measure(name: str, members: int, steps: int, extra: list[str], root: Path) -> str:
    config, alphas, decays, flops = WORKLOADS[name]
    args = [
        member_args(
            config, alphas[i % len(alphas)], decays[i // len(alphas) % len(decays)], i, steps, extra
        )
        for i in range(members)
    ]
    start = time.perf_counter()
    for i, a in enumerate(args):
        code = main(["fit", *a, f"--run_dir={root / name / 'sequential' / str(i)}"])
        assert code == 0, f"sequential run {i} exited {code}"
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    codes = run_members(
        [[*a, f"--run_dir={root / name / 'vectorized' / str(i)}"] for i, a in enumerate(args)]
    )
    vectorized = time.perf_counter() - start
    assert codes == [0] * members, codes
    differences = [
        max_difference(root / name / "sequential" / str(i), root / name / "vectorized" / str(i))
        for i in range(members)
    ]
    worst, close = max(differences), sum(d <= 1e-4 for d in differences)
    d = (
        int(next(a for a in extra if a.startswith("--data.d=")).split("=")[1])
        if any(a.startswith("--data.d=") for a in extra)
        else (97 if name == "E5" else 10_000)
    )
    n = _train_size(name, d, extra)
    work = flops(n, d) * steps * members / 1e9
    return (
        f"{name} d={d} K={members} steps={steps}: sequential {sequential:.1f} s, vectorized "
        f"{vectorized:.1f} s, ratio {sequential / vectorized:.2f} (gd steps "
        f"{work / sequential:.1f} -> {work / vectorized:.1f} GFLOP/s), max per-member "
        f"difference {worst:.1e} ({close}/{members} members <= 1e-4)"
    )


def _train_size(name: str, d: int, extra: list[str]) -> int:
    if name == "E5":
        return min(max(1, round(0.05 * d * d)), d * d - 1)
    n = [a for a in extra if a.startswith("--data.n_train=")]
    return int(n[0].split("=")[1]) if n else 256


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    parser.add_argument("--gpu", action="store_true", help="the E1 paper grid on the GPU")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    device = "cuda" if args.gpu else "cpu"
    print(
        f"torch threads {torch.get_num_threads()}; peak 1024^2 matmul "
        f"{peak_gflops(device):.0f} GFLOP/s on {device}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.gpu:
            paper = [
                "--config",
                str(REPO / "configs" / "paper" / "e1_sparse_grokking.yaml"),
                "--trainer.accelerator=gpu",
            ]
            WORKLOADS["E1"] = (
                REPO / "configs" / "paper" / "e1_sparse_grokking.yaml",
                *WORKLOADS["E1"][1:],
            )
            print(measure("E1", 36, args.steps, ["--data.d=100000", *paper[2:]], root))
            return
        for name in [args.only] if args.only else list(WORKLOADS):
            print(measure(name, args.members, args.steps, [], root), flush=True)


if __name__ == "__main__":
    main_bench()
