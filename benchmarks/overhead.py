"""Wall-clock per gradient step: grokkit's Lightning loop against a plain PyTorch loop.

Both loops train the quickstart model (E1 diagonal net, configs/quickstart.yaml settings) on the
same data, with the same optimizer and the same log-spaced evaluation schedule (full train and
test evaluation at each point), in this one process. Prints the ratio grokkit / plain; the
target is <= 1.05.

    .venv/bin/python benchmarks/overhead.py [--steps 20000] [--repeats 2]
"""

import argparse
import logging
import math
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from grokkit.callbacks import ConsoleProgress, PhaseDetector
from grokkit.data import SparseLinearData
from grokkit.lightning_cli import TRAINER_DEFAULTS
from grokkit.models import DiagonalNet
from grokkit.objectives import binary_accuracy, logistic_loss
from grokkit.rundir import MetricsCSVLogger
from grokkit.schedule import EvalSchedule
from grokkit.task import GrokTask

QUICKSTART = {"d": 10_000, "k": 3, "n_train": 256, "n_test": 2_000}
ALPHA, LR, WD, EVAL_POINTS = 128.0, 0.01, 0.01, 300


def plain_loop(data: SparseLinearData, steps: int) -> float:
    """The loop a researcher would write by hand; returns seconds."""
    (x, y), (xt, yt) = data.splits["train"], data.splits["test"]
    net = DiagonalNet(QUICKSTART["d"])
    net.scale_init_(ALPHA)
    opt = torch.optim.SGD(net.parameters(), lr=LR, weight_decay=WD)
    evals = set(EvalSchedule(steps, EVAL_POINTS).steps)
    rows, t = [], 0.0
    start = time.perf_counter()
    for step in range(steps + 1):
        if step in evals:
            with torch.no_grad():
                out, out_t = net(x), net(xt)
                norm = torch.cat([p.flatten() for p in net.parameters()]).norm()
                rows.append(
                    [
                        step,
                        t,
                        logistic_loss(out, y).item(),
                        logistic_loss(out_t, yt).item(),
                        binary_accuracy(out, y).item(),
                        binary_accuracy(out_t, yt).item(),
                        norm.item(),
                    ]
                )
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        logistic_loss(net(x), y).backward()
        opt.step()
        t += LR
    assert math.isfinite(rows[-1][2])
    return time.perf_counter() - start


def grokkit_loop(
    data: SparseLinearData, steps: int, run_dir: Path, extra_callbacks: tuple = ()
) -> float:
    """GrokTask under a Trainer configured as `grokkit fit` configures it (plus
    ``extra_callbacks``); returns seconds."""
    task = GrokTask(
        DiagonalNet(QUICKSTART["d"]), alpha=ALPHA, lr=LR, weight_decay=WD, eval_points=EVAL_POINTS
    )
    trainer = pl.Trainer(
        **{**TRAINER_DEFAULTS, "logger": [MetricsCSVLogger(run_dir)]},
        max_steps=steps,
        callbacks=[PhaseDetector(), ConsoleProgress(), *extra_callbacks],
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=data)
    assert trainer.global_step == steps
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    data = SparseLinearData(**QUICKSTART)
    data.setup()
    plain, grok = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # interleaved, alternating order: drift hits both
            if i % 2:
                grok.append(grokkit_loop(data, args.steps, Path(tmp) / str(i)))
                plain.append(plain_loop(data, args.steps))
            else:
                plain.append(plain_loop(data, args.steps))
                grok.append(grokkit_loop(data, args.steps, Path(tmp) / str(i)))
    p, g = min(plain), min(grok)
    print(f"steps per run:        {args.steps} ({EVAL_POINTS} evaluation points)")
    print(f"plain PyTorch loop:   {1e6 * p / args.steps:8.1f} us/step  (runs: {plain})")
    print(f"grokkit (Lightning):  {1e6 * g / args.steps:8.1f} us/step  (runs: {grok})")
    print(f"ratio grokkit/plain:  {g / p:.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
