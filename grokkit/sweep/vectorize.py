"""``grokkit sweep FILE --vectorize [K]``: the sweep's runs in batches, one process per batch.

A batch's runs are the members of one ``grokkit ensemble`` process (``grokkit.ensemble``): each a
whole ``grokkit fit`` in its own run directory, their gradient steps one stacked computation.
Runs go into one batch when they can step together:

* they differ only in per-member scalars (``MEMBER_KEYS``: α, λ, η and its warm-up, the flow-time
  horizon, the model seed, and what only names or watches a run). Every other parameter (the
  data section, data seed included, the net, the loss, max_steps, eval_points, ...) splits them;
* their config can be batched (``grokkit.batching.batchable``): full batch, not loss-normalized,
  and plain gd steps (``model.integrator=gd``, ``model.optimizer=sgd``) or the adaptive
  integrator (each member with its own step sizes and ``model.rtol``). Any other run is a batch
  of one, a plain ``grokkit fit`` process.

A batch holds at most K runs (default: as many as fit), fewer where the memory estimate
(``member_bytes``) says K would not fit in half the memory available (the GPU's with ``--gpus``),
and with several workers a group is dealt into at least one batch per worker.
"""

import math
import os
from typing import Any

from grokkit.console import say
from grokkit.sweep.spec import SweepRun, SweepSpec

# Parameters members of one batch may differ in (prefixes end with a dot)
MEMBER_KEYS = (
    "model.alpha",
    "model.weight_decay",
    "model.lr",
    "model.lr_warmup_steps",
    "model.lr_warmup_start",
    "model.max_flow_time",
    "model.rtol",
    "seed_everything",
    "run_dir",
    "checkpoint_every",
    "trainer.max_time",
    "wandb.",
    "phases.",
)


def member_key(name: str) -> bool:
    return any(name == k or (k.endswith(".") and name.startswith(k)) for k in MEMBER_KEYS)


def group_key(run: SweepRun) -> tuple:
    """Runs with the same key may share a batch: the values of every parameter that is not a
    per-member scalar."""
    return tuple(sorted((k, repr(v)) for k, v in run.params.items() if not member_key(k)))


def plan_batches(
    spec: SweepSpec, runs: list[SweepRun], limit: int | None, workers: int, gpu: bool
) -> list[list[SweepRun]]:
    """The sweep's runs in batches (file order within each), for ``--vectorize [limit]``."""
    groups: dict[tuple, list[SweepRun]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    batches: list[list[SweepRun]] = []
    for group in groups.values():
        reason, per_member = _probe(spec, group[0])
        if reason is not None:
            say(f"{len(group)} run(s) step alone: {reason}", who="grokkit sweep")
            batches += [[run] for run in group]
            continue
        cap = max(1, int(_memory_budget(gpu) // per_member)) if per_member else len(group)
        size = min(limit or len(group), cap, math.ceil(len(group) / max(1, workers)))
        if limit is None or size < limit:
            say(
                f"{len(group)} run(s) in batches of {size} (about {per_member / 2**20:.0f} MiB "
                f"per member; memory for {cap})",
                who="grokkit sweep",
            )
        batches += [group[i : i + size] for i in range(0, len(group), size)]
    return batches


def _probe(spec: SweepSpec, run: SweepRun) -> tuple[str | None, float]:
    """Build the run's model and data without training: why it cannot be batched (None: it
    can), and its estimated bytes per member."""
    from grokkit.batching import batchable
    from grokkit.lightning_cli import build_without_training

    cli = build_without_training(spec.fit_args(run))
    reason = batchable(cli.model)
    if reason is not None:
        return reason, 0.0
    return None, member_bytes(cli.model, cli.config)


def member_bytes(task: Any, config: Any) -> float:
    """A rough upper estimate of one member's memory in a batch: its parameters about ten times
    (its net, the stacked copy, gradient, update, the vmapped forward's intermediates), six more
    for the adaptive integrator's own vectors (point, gradient, eigenvector, stages), plus the
    Jacobian of an NTK callback's probe (probe_size × parameters)."""
    params = sum(p.numel() * p.element_size() for p in task.net.parameters())
    copies = 10 + (6 if task.hparams.integrator == "adaptive" else 0)
    probe = 0
    for callback in config.get("trainer", {}).get("callbacks") or []:
        if "NTKAlignment" in str(getattr(callback, "class_path", callback)):
            init = getattr(callback, "init_args", None) or {}
            probe = max(probe, int(dict(init).get("probe_size", 256) or 256))
    return float(params * (copies + probe))


def _memory_budget(gpu: bool) -> float:
    """Half of the memory available now: the GPU's (the first visible) or the machine's."""
    if gpu:
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return free / 2
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 2
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4
