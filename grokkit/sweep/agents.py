"""``grokkit agent SWEEP_ID --gpus 0,1,...``: one ``wandb agent --forward-signals`` per GPU.

Each agent sees only its GPU (CUDA_VISIBLE_DEVICES) and trains one grokkit run after another
until the W&B sweep is done. Ctrl-C/SIGTERM is passed to every agent once; they forward it to
their runs, which stop after the current step and write checkpoint and summary.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from grokkit.sweep.executor import worker_env


def agent_commands(sweep_id: str, count: int | None, wandb: str) -> list[str]:
    return [
        wandb,
        "agent",
        "--forward-signals",
        *(["--count", str(count)] if count else []),
        sweep_id,
    ]


def run_agents(sweep_id: str, gpus: list[str], per_gpu: int = 1, count: int | None = None) -> int:
    """Start ``per_gpu`` agents on each GPU and wait; the exit status is the first non-zero
    agent exit status (0 if all agents finished cleanly)."""
    wandb = shutil.which("wandb")
    if wandb is None:
        print("grokkit: error: the wandb command is not on PATH", file=sys.stderr)
        return 2
    n = len(gpus) * per_gpu
    processes = []
    for worker in range(n):
        env = worker_env(worker, n, gpus, dict(os.environ))
        print(
            f"grokkit agent {worker}: GPU {env['CUDA_VISIBLE_DEVICES']}: wandb agent {sweep_id}",
            flush=True,
        )
        processes.append(
            subprocess.Popen(
                agent_commands(sweep_id, count, wandb), env=env, start_new_session=True
            )
        )

    def forward(signum: int, frame: Any) -> None:
        print(f"\ngrokkit agent: {signal.Signals(signum).name}: stopping the agents", flush=True)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(p.poll() is None for p in processes):
            time.sleep(0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    codes = [p.returncode for p in processes]
    print(f"grokkit agent: agents exited with {codes}", flush=True)
    return next((c for c in codes if c != 0), 0)
