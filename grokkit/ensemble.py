"""Many runs, one process: K ``grokkit fit`` runs whose gradient steps are one stacked computation.

Each member is a whole ``grokkit fit`` (its own GrokTask, Trainer, callbacks, run directory,
checkpoints and W&B run), run in a thread of its own. Only the gradient steps are shared: a gd
member's training step hands its chunk (start step, next evaluation step) to the process's
``Batcher`` instead of stepping itself. Once every live member has handed in a chunk (or left:
finished, failed, diverged, stopped, or unbatchable and stepping alone), the batcher, on the
process's main thread, runs each group of members with the same data tensors, net structure,
loss and chunk as ONE computation: the members' parameters stacked along a new leading axis,
``torch.func.vmap(grad(loss))`` over the shared data (for the diagonal net a matrix product X·W
instead of K matrix-vector products; for E5's matrix factorization a hand-written step,
``grokkit.batching.stacking``), and plain gradient descent with each member's own step size
η(step) (warm-up included), weight decay λ, flow time t = Σ η, flow-time horizon and stop
request. The parameters go back into each member's net and the members record their rows
(evaluation, callbacks, loggers) as usual, each on one thread (the main thread's stacked steps
get the process's threads; an unbatchable member steps alone on its one thread too).

An adaptive member (``model.integrator: adaptive``) keeps its own integrator (step sizes, stages,
rejections, ρ estimates, flow time, landing on its own evaluation times) and hands in each
gradient evaluation instead: every round, the batcher evaluates ∇L for each group of members
that asked, stacked, at each member's own current point. Members whose integrators need
different numbers of evaluations simply take part in more or fewer rounds.

Members are independent in the stacked computation (no sum across the member axis), so a member
whose parameters overflow does not touch the others: it records its non-finite row at its next
evaluation point and ends ``diverged``, exactly where the run alone would, and leaves the batch.

Batched: full batch, not loss-normalized, and either integrator gd with optimizer sgd (no
momentum: no optimizer state) or the adaptive integrator. Any other member (adamw, minibatch,
loss-normalized) leaves the batch at its first step and steps alone in its thread, with the
others still batched.

Data are built once per equal settings (``grokkit.data.full_batch.shared_builds``): the members
share one copy, moved to the device once, and so the same tensors.

Members are built one at a time (``seed_everything`` and the model's initialization use the
global RNG): a member builds, evaluates its initialization and hands in its first chunk before the
next one starts building.

``grokkit ensemble MEMBERS.json`` (internal; ``grokkit sweep FILE --vectorize`` writes the file)
runs the members listed there and writes each one's exit code into the file's ``result`` path.
"""

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from grokkit.batching import Batcher, join, pin_threads
from grokkit.data.full_batch import shared_builds

# ---- running the members ---------------------------------------------------------------------


class _ThreadStreams:
    """sys.stdout/sys.stderr that send each member thread's output to its own log file."""

    def __init__(self, fallback: IO[str]) -> None:
        self.fallback = fallback
        self.by_thread: dict[int, IO[str]] = {}

    def _target(self) -> IO[str]:
        return self.by_thread.get(threading.get_ident(), self.fallback)

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)


def run_members(
    members: list[list[str]],
    logs: list[Path | None] | None = None,
    on_batcher: Callable[[Batcher], None] | None = None,
) -> list[int]:
    """Run ``grokkit fit`` with each argument list as one member of an ensemble; their exit
    codes. ``logs``: a file per member for its output (None: this process's output)."""
    from grokkit.lightning_cli import run_command

    batcher = Batcher(len(members))
    if on_batcher is not None:
        on_batcher(batcher)
    codes = [EXIT_FAILED] * len(members)
    logs = logs or [None] * len(members)
    streams = [_ThreadStreams(sys.stdout), _ThreadStreams(sys.stderr)]
    files = [open(p, "a") if p is not None else None for p in logs]  # noqa: SIM115

    per_op = torch.get_num_threads()  # the stacked rounds get them (on this thread)

    def member(i: int) -> None:
        join(batcher)
        # the member's own work on one thread; the stacked rounds, on the serving thread, get
        # the process's (see Batcher: one OpenMP pool per thread)
        pin_threads(1)
        if files[i] is not None:
            for s in streams:
                s.by_thread[threading.get_ident()] = files[i]
        try:
            batcher.start_building()
            codes[i] = run_command(["fit", *members[i]])
        except BaseException as exc:  # noqa: BLE001 — a member's failure is its own
            print(f"grokkit: member failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            batcher.leave()

    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = streams  # type: ignore[assignment]
    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(len(members))]
    try:
        with shared_builds():  # one copy of equal data in the process
            for thread in threads:
                thread.start()
            batcher.serve(per_op)  # until every member has left (signal handlers run in between)
            for thread in threads:
                thread.join()
    finally:
        sys.stdout, sys.stderr = saved
        for f in files:
            if f is not None:
                f.close()
    return codes


EXIT_FAILED = 1


def ensemble_main(argv: list[str]) -> int:
    """``grokkit ensemble MEMBERS.json``: {"members": [{"args": [...], "log": PATH|null}, ...],
    "result": PATH}; writes {"exit_codes": [...]} to ``result``. Exit code: the worst member's
    (interrupted 130 > failed 1 > diverged 3 > completed 0)."""
    from grokkit.console import error
    from grokkit.outcome import EXIT_CODES
    from grokkit.rundir import write_json_atomic
    from grokkit.signals import on_stop_signals

    if len(argv) != 1 or not Path(argv[0]).is_file():
        error("usage: grokkit ensemble MEMBERS.json (written by grokkit sweep --vectorize)")
        return EXIT_CODES["bad_input"]
    spec = json.loads(Path(argv[0]).read_text())
    members = [m["args"] for m in spec["members"]]
    logs = [Path(m["log"]) if m.get("log") else None for m in spec["members"]]
    holder: list[Batcher] = []
    signals = [0]

    def stop(signum: int) -> None:
        signals[0] += 1
        if holder:
            holder[0].request_stop()
        if signals[0] > 1:
            raise KeyboardInterrupt

    with on_stop_signals(stop):
        codes = run_members(members, logs, on_batcher=holder.append)
    if spec.get("result"):
        write_json_atomic(Path(spec["result"]), {"exit_codes": codes})
    for status in ("interrupted", "failed", "diverged", "bad_input"):
        if EXIT_CODES[status] in codes:
            return EXIT_CODES[status]
    return 0 if all(c == 0 for c in codes) else max(codes)
