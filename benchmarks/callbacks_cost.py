"""Wall-clock cost of the dichotomy callbacks (normalized margin, NTK alignment, implicit-bias
probes with their reference solves) on the quickstart, at their default cadence.

Three loops on the quickstart model and data, in this one process, interleaved: a plain
PyTorch loop, grokkit without the callbacks, grokkit with them (a fresh run directory each time,
so the references are solved every time, as in a new run). Prints each against the plain loop
and the ratio with/without callbacks; the target is <= 1.10.

    .venv/bin/python benchmarks/callbacks_cost.py [--steps 60000] [--repeats 2]
"""

import argparse
import logging
import tempfile
from pathlib import Path

from overhead import EVAL_POINTS, QUICKSTART, grokkit_loop, plain_loop

from grokkit.callbacks import ImplicitBiasProbe, NormalizedMargin, NTKAlignment
from grokkit.data import SparseLinearData


def dichotomy_callbacks() -> tuple:
    """The callbacks as configs/quickstart.yaml sets them (their defaults)."""
    return (NormalizedMargin(), NTKAlignment(), ImplicitBiasProbe())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000, help="the quickstart's 60 000")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    data = SparseLinearData(**QUICKSTART)
    data.setup()
    times: dict[str, list[float]] = {"plain": [], "without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = ["plain", "without", "with"]
            for name in order if i % 2 == 0 else order[::-1]:  # drift hits all three
                run_dir = Path(tmp) / f"{name}-{i}"
                if name == "plain":
                    times[name].append(plain_loop(data, args.steps))
                else:
                    extra = dichotomy_callbacks() if name == "with" else ()
                    times[name].append(grokkit_loop(data, args.steps, run_dir, extra))
    best = {name: min(values) for name, values in times.items()}
    print(f"steps per run: {args.steps} ({EVAL_POINTS} evaluation points), {args.repeats} repeats")
    for name, label in (
        ("plain", "plain PyTorch loop"),
        ("without", "grokkit, no callbacks"),
        ("with", "grokkit + margin/NTK/probes"),
    ):
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"{label:28s} {best[name]:7.1f} s  x{best[name] / best['plain']:.3f} plain  ({runs})")
    print(f"ratio with/without callbacks: {best['with'] / best['without']:.3f}   (target <= 1.10)")


if __name__ == "__main__":
    main()
