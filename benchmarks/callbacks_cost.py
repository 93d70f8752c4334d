"""Wall-clock cost of the dichotomy callbacks (normalized margin, NTK alignment, implicit-bias
probes with their reference solves) on the quickstart, at their default cadence.

Three loops on the quickstart model and data: a plain PyTorch loop, grokkit without the
callbacks, grokkit with them (a fresh run directory, so the references are solved, as in a new
run). Each loop runs in its own process (so no thread pool started by one loop, e.g. a BLAS
pool woken by a solver, can slow another), interleaved over the repeats. Prints each against
the plain loop and the ratio with/without callbacks; the target is <= 1.10.

    .venv/bin/python benchmarks/callbacks_cost.py [--steps 60000] [--repeats 2]
"""

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from overhead import EVAL_POINTS, QUICKSTART, grokkit_loop, plain_loop

from grokkit.callbacks import ImplicitBiasProbe, NormalizedMargin, NTKAlignment
from grokkit.data import SparseLinearData

VARIANTS = {"plain": "plain PyTorch loop", "without": "grokkit, no callbacks",
            "with": "grokkit + margin/NTK/probes"}  # fmt: skip


def dichotomy_callbacks() -> tuple:
    """The callbacks as configs/quickstart.yaml sets them (their defaults)."""
    return (NormalizedMargin(), NTKAlignment(probe_size=128, every=5), ImplicitBiasProbe())


def run_one(variant: str, steps: int) -> float:
    """Seconds for one loop, in this process."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    data = SparseLinearData(**QUICKSTART)
    data.setup()
    if variant == "plain":
        return plain_loop(data, steps)
    with tempfile.TemporaryDirectory() as tmp:
        extra = dichotomy_callbacks() if variant == "with" else ()
        return grokkit_loop(data, steps, Path(tmp), extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000, help="the quickstart's 60 000")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(run_one(args.one, args.steps))
        return
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(args.repeats):
        for name in list(VARIANTS) if i % 2 == 0 else list(VARIANTS)[::-1]:  # drift hits all
            cmd = [sys.executable, __file__, "--one", name, "--steps", str(args.steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            times[name].append(float(out.strip().splitlines()[-1]))
    best = {name: min(values) for name, values in times.items()}
    print(f"steps per run: {args.steps} ({EVAL_POINTS} evaluation points), {args.repeats} repeats")
    for name, label in VARIANTS.items():
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"{label:28s} {best[name]:7.1f} s  x{best[name] / best['plain']:.3f} plain  ({runs})")
    print(f"ratio with/without callbacks: {best['with'] / best['without']:.3f}   (target <= 1.10)")


if __name__ == "__main__":
    main()
