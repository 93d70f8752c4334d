"""W&B: offline by default (files in the run directory), phase times in the run summary."""

from pathlib import Path

import wandb
from conftest import TINY

from grokkit.cli import main
from grokkit.wandb_setup import WandbSettings, resolve_mode


def test_offline_run_lands_in_run_dir_with_phase_times_in_summary(monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(Path.cwd()))  # no ~/.netrc: no API key configured
    captured = {}
    original_finish = wandb.Run.finish

    def finish(run, *args, **kwargs):
        captured.update(dict(run.summary), mode=run.settings.mode, dir=run.dir)
        return original_finish(run, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "finish", finish)
    assert main(["fit", *TINY, "--run_dir=runs/w"]) == 0
    run_id = Path("runs/w/wandb_id").read_text().strip()
    offline = list(Path("runs/w/wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(offline) == 1
    assert captured["mode"] == "offline"
    assert Path(captured["dir"]).resolve().is_relative_to(Path("runs/w").resolve())
    assert captured["status"] == "completed" and captured["memorization_step"] == 2
    assert captured["predicted_transition_time"] > 0
    assert "grokking_step" not in captured  # not reached: null in summary.json, absent in W&B
    assert captured["test/acc"] > 0.5


def test_mode_precedence(monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("HOME", str(Path.cwd()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_mode(WandbSettings()) == "offline"  # no key anywhere
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(WandbSettings()) == "online"
    assert resolve_mode(WandbSettings(mode="disabled")) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")  # the environment wins over the config
    assert resolve_mode(WandbSettings(mode="online")) == "offline"


def test_disabled_mode_writes_no_wandb_files():
    assert main(["fit", *TINY, "--run_dir=runs/off"]) == 0  # conftest sets WANDB_MODE=disabled
    assert not Path("runs/off/wandb").exists()
