"""Per-row cost of an evaluation row: ``GrokTask.evaluate`` (the torchmetrics metrics,
``grokkit.metrics``) against the direct computation it replaced (one forward pass per split, the
objective's loss in float64 and accuracy, one ``.item()`` each), on the quickstart's model and data.

Also times the metrics alone (reset, update, compute of both splits on fixed outputs, one
transfer) against the direct formulas on the same outputs: the part torchmetrics adds, without
the forward passes' noise. Interleaved over the repeats; prints the best per-row time of each.

    .venv/bin/python benchmarks/eval_cost.py [--rows 1000] [--repeats 5] [--threads 1] [--d 10000]
"""

import argparse
import time

import torch

from grokkit.data import SparseLinearData
from grokkit.models import DiagonalNet
from grokkit.task import GrokTask

QUICKSTART = {"d": 10_000, "k": 3, "n_train": 256, "n_test": 2_000}


@torch.no_grad()
def direct_row(task: GrokTask, batch: dict) -> dict[str, float]:
    """The evaluation row as computed before the metrics (grokkit up to issue 13)."""
    for x, _ in batch.values():
        task.net.check_input(x)
    outputs = {split: task.net(x) for split, (x, _) in batch.items()}
    row = {"step": task.global_step, "time": task.flow_time}
    for split, (_, y) in batch.items():
        y64 = y.double() if y.is_floating_point() else y
        row[f"{split}/loss"] = task.objective.loss(outputs[split].double(), y64).item()
    for split, (_, y) in batch.items():
        row[f"{split}/acc"] = task.objective.accuracy(outputs[split], y).item()
    row["param_norm"] = torch.linalg.vector_norm(
        torch.cat([p.detach().flatten() for p in task.parameters()])
    ).item()
    return row


def metrics_only(task: GrokTask, batch: dict, outputs: dict) -> list[float]:
    """The metrics' part of a row on fixed outputs: reset, update, compute, one transfer."""
    values = {}
    for split, (_, y) in batch.items():
        metrics = task._eval_metrics[(split, outputs[split].device)]
        metrics.reset()
        metrics.update(outputs[split], y)
        values.update(metrics.compute())
    return torch.stack([v.double() for v in values.values()]).tolist()


def direct_only(task: GrokTask, batch: dict, outputs: dict) -> list[float]:
    """The same values computed directly, as before the metrics."""
    values = []
    for split, (_, y) in batch.items():
        y64 = y.double() if y.is_floating_point() else y
        values.append(task.objective.loss(outputs[split].double(), y64).item())
        values.append(task.objective.accuracy(outputs[split], y).item())
    return values


def per_row(fn, rows: int) -> float:
    start = time.perf_counter()
    for _ in range(rows):
        fn()
    return (time.perf_counter() - start) / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--d", type=int, default=QUICKSTART["d"], help="smaller: less forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = SparseLinearData(**{**QUICKSTART, "d": args.d})
    data.setup()
    batch = {name: data.splits[name] for name in ("train", "test")}
    task = GrokTask(DiagonalNet(args.d), alpha=128.0)
    new, old = task.evaluate(batch), direct_row(task, batch)
    assert new == old, (new, old)  # the same row, to the bit
    with torch.no_grad():
        outputs = {split: task.net(x) for split, (x, _) in batch.items()}
    variants = {
        "evaluate (metrics)": lambda: task.evaluate(batch),
        "direct (before)": lambda: direct_row(task, batch),
        "metrics alone": lambda: metrics_only(task, batch, outputs),
        "direct alone": lambda: direct_only(task, batch, outputs),
    }
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            best[name] = min(best[name], per_row(fn, args.rows))
    for name, seconds in best.items():
        print(f"{name:20s} {1e6 * seconds:8.1f} us/row")
    added = best["evaluate (metrics)"] - best["direct (before)"]
    print(f"added per row:       {1e6 * added:8.1f} us (evaluate)")
    added = best["metrics alone"] - best["direct alone"]
    print(f"added per row:       {1e6 * added:8.1f} us (on fixed outputs)")


if __name__ == "__main__":
    main()
