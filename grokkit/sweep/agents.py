"""``grokkit agent SWEEP_ID --gpus 0,1,...``: one ``wandb agent --forward-signals`` per GPU.

Each agent sees only its GPU (CUDA_VISIBLE_DEVICES) and trains one grokkit run after another
until the W&B sweep is done. Ctrl-C/SIGTERM is passed to every agent once; they forward it to
their runs, which stop after the current step and write checkpoint and summary.
"""

import os
import shutil
import signal
import subprocess
import time

from grokkit.console import error, say
from grokkit.outcome import EXIT_CODES
from grokkit.signals import on_stop_signals, signal_name
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
        error("the wandb command is not on PATH")
        return EXIT_CODES["bad_input"]
    n = len(gpus) * per_gpu
    processes = []
    for worker in range(n):
        env = worker_env(worker, n, gpus, dict(os.environ))
        say(
            f"GPU {env['CUDA_VISIBLE_DEVICES']}: wandb agent {sweep_id}",
            who=f"grokkit agent {worker}",
        )
        processes.append(
            subprocess.Popen(
                agent_commands(sweep_id, count, wandb), env=env, start_new_session=True
            )
        )

    def forward(signum: int) -> None:
        say(f"{signal_name(signum)}: stopping the agents", who="grokkit agent")
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    with on_stop_signals(forward):
        while any(p.poll() is None for p in processes):
            time.sleep(0.2)
    codes = [p.returncode for p in processes]
    say(f"agents exited with {codes}", who="grokkit agent")
    return next((c for c in codes if c != 0), 0)
