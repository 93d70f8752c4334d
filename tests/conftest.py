"""Shared fixtures and helpers: every test runs in its own working directory, with W&B off unless
a test turns it on (no test ever needs the network); the small E1 runs, the all-pairs inputs and
the finished sweep that several test files use."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "configs" / "quickstart.yaml"


# A CPU-small E1 that still shows the whole phenomenon in ~1-2 s: memorizes at step 1, sits
# near chance for hundreds of steps, then groks (the step size is warmed up to 0.5).
SMALL_E1 = [
    "--config",
    str(QUICKSTART),
    "--data.d=2000",
    "--data.n_train=128",
    "--data.n_test=1000",
    "--model.lr=0.5",
    "--model.lr_warmup_steps=100",
    "--model.lr_warmup_start=0.01",
    "--model.eval_points=100",
]


# A few hundred fast steps on a small E1; agent-form overrides as `wandb agent` passes them.
TINY = [
    "--config",
    str(QUICKSTART),
    "--data.d=500",
    "--data.n_test=200",
    "--model.eval_points=20",
    "--trainer.max_steps=60",
]


@pytest.fixture(autouse=True)
def isolated_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


@pytest.fixture(autouse=True)
def one_thread(request):
    """Small tensor ops on 2 shared cores: one intra-op thread is faster and immune to another
    process's threads (two 2-thread processes slow small ops 10-30x); restored afterwards.
    Slow tests keep PyTorch's default: they measure runs as a user would make them."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def all_pairs(p: int) -> torch.Tensor:
    """Every input pair (a, b) of Z_p x Z_p, row-major: the modular tasks' whole input set."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return torch.stack([a.flatten(), b.flatten()], dim=1)


# ---------------------------------------------------------------- sweeps

ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def sweep_file(
    directory: Path, alphas: str, max_steps: str, name: str = "small", decays: str = "[0.05, 0.1]"
) -> Path:
    """A grid over α × λ × max_steps of the small E1 (it groks within ~1500 steps)."""
    command = "".join(f"  - {arg}\n" for arg in ["grokkit", "fit", *SMALL_E1, "${args}"])
    path = directory / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmethod: grid\nmetric: {{name: grokking_time, goal: minimize}}\n"
        f"parameters:\n  model.alpha: {{values: {alphas}}}\n"
        f"  model.weight_decay: {{values: {decays}}}\n"
        f"  trainer.max_steps: {{values: {max_steps}}}\ncommand:\n{command}"
    )
    return path


def grokkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grokkit", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Four runs (α ∈ {16, 256} × λ ∈ {0.05, 0.1}) with two workers dealt over two fake GPUs;
    run once per session for the executor's tests and the report's."""
    root = tmp_path_factory.mktemp("sweep")
    path = sweep_file(root, "[16, 256]", "[1500]")
    result = grokkit("sweep", str(path), "--workers", "2", "--gpus", "3,5", cwd=root)
    return root / "runs" / "small", result
