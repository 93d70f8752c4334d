"""Shared fixtures: every test runs in its own working directory, with W&B off unless a test
turns it on (no test ever needs the network)."""

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
