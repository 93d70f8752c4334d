"""The adaptive integrator against fixed-step gradient descent, run for run, through the CLI.

For each config (quickstart E1, CPU E2, CPU E5): one `grokkit fit` with the config as it is
(`gd` at the config's η) and one with `--model.integrator=adaptive` (to the same flow time).
Prints one line per config: gradient evaluations and wall time both ways, each phase time both
ways with its relative difference (target: within 5%), and the adaptive run's gradient
evaluations to the transition against what `gd` at the paper's η would need to get there
(t_phase / η_paper steps; target: >= 100x fewer). Runs are sequential (one timing process).

Where the time goes: both runs are per-step-overhead bound on these sizes (a gradient of the
E1 diagonal net at d = 10^4 is ~10^6 flops); the adaptive integrator wins by taking fewer,
longer steps, not by faster arithmetic.

    .venv/bin/python benchmarks/flow.py [--rtol 1e-3] [--only quickstart]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from grokkit.rundir import METRICS, SUMMARY, read_metrics

REPO = Path(__file__).resolve().parents[1]
# config, the paper's η for that experiment, extra overrides (callbacks off: timing the loop)
CASES = {
    "quickstart": ("configs/quickstart.yaml", 0.01),
    "e2": ("configs/cpu/e2_misgrokking.yaml", 0.01),
    "e5": ("configs/cpu/e5_matrix_completion.yaml", 0.1),
}
PHASES = ("memorization", "grokking", "misgrokking")


def fit(config: str, run_dir: Path, extra: list[str]) -> tuple[dict, dict, float]:
    """(summary, metrics columns, wall seconds) of one run."""
    cmd = [sys.executable, "-m", "grokkit", "fit", "--config", config, "--trainer.callbacks=[]"]
    cmd += [f"--run_dir={run_dir}", *extra]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"flow benchmark: {' '.join(cmd)} exited {done.returncode}\n{done.stderr[-2000:]}")
    summary = json.loads((run_dir / SUMMARY).read_text())
    return summary, read_metrics(run_dir / METRICS), seconds


def evaluations_at(cols: dict, t: float) -> float:
    """Gradient evaluations the adaptive run had spent when it reached flow time t."""
    return float(np.interp(t, cols["time"], cols["gradient_evaluations"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--only", choices=sorted(CASES), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (config, paper_lr) in CASES.items():
            if args.only and name != args.only:
                continue
            gd, _, gd_s = fit(config, Path(tmp) / f"{name}-gd", [])
            ad, ad_cols, ad_s = fit(
                config,
                Path(tmp) / f"{name}-ad",
                ["--model.integrator=adaptive", f"--model.rtol={args.rtol}"],
            )
            parts = [
                f"{name:10s} gd {gd['gradient_evaluations']} evals {gd_s:.0f} s | adaptive "
                f"{ad['gradient_evaluations']} evals {ad_s:.0f} s (rtol {args.rtol:g})"
            ]
            for phase in PHASES:
                a, b = gd.get(f"{phase}_time"), ad.get(f"{phase}_time")
                if a is None and b is None:
                    continue
                if a is None or b is None:
                    parts.append(f"{phase} t gd {a} adaptive {b} MISMATCH")
                    continue
                text = f"{phase} t {a:.4g} vs {b:.4g} (diff {abs(b - a) / a:.2%})"
                # the transitions, what gd at the paper's η pays for: phases after memorization
                # (E2's test accuracy is high from the first row, a "grokking" at memorization)
                memorized = ad.get("memorization_time")
                if phase != "memorization" and (memorized is None or b > memorized):
                    evals = evaluations_at(ad_cols, b)
                    text += (
                        f", {evals:.0f} evals to it vs {b / paper_lr:.3g} steps of gd at the "
                        f"paper's eta: ratio {b / paper_lr / max(evals, 1.0):.0f}"
                    )
                parts.append(text)
            print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
