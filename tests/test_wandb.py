"""W&B: offline by default (files in the run directory), phase times in the run summary."""

from pathlib import Path

import pytest
import wandb
from conftest import TINY
from wandb_records import history, records

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


def offline_files(run_dir: Path) -> list[Path]:
    """The run files, whole: ``run.finish()`` returns before wandb's service has closed the
    run's file (its last partial 32 KiB block is written then), so wait for the service to
    shut down first, as a process exiting does."""
    wandb.teardown()
    return sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))


def test_w_and_b_rows_axes_censored_grokking_time_image_and_checkpoints(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["fit", *TINY, "--run_dir=runs/w"]) == 0
    (path,) = offline_files(Path("runs/w"))
    found = list(records(path))
    rows = [h for h in history(path) if "train/loss" in h]
    csv_steps = [line.split(",")[0] for line in Path("runs/w/metrics.csv").read_text().split()]
    assert [row["_step"] for row in rows] == csv_steps[1:]
    for row in rows:  # one step key: W&B's own (= the gradient step), no "step" or "time"
        assert "step" not in row and "time" not in row
        assert row["_step"] == row["trainer/global_step"]
        assert float(row["lambda_t"]) == pytest.approx(0.01 * float(row["flow_time"]))
    axes = {r.metric.name for r in found if r.WhichOneof("record_type") == "metric"}
    assert {"flow_time", "lambda_t"} <= axes
    summary: dict[str, str] = {}
    for r in found:
        if r.WhichOneof("record_type") == "summary":
            summary.update({item.key: item.value_json for item in r.summary.update})
    # never grokked: censored at the final flow time, and said so
    assert summary["grokked"] == "false" and summary["grokking_time"] == summary["flow_time"]
    assert any(key.startswith("curves/") for key in rows[-1])  # the image, at the last row
    (artifact,) = [r.artifact for r in found if r.WhichOneof("record_type") == "artifact"]
    assert artifact.type == "model"
    assert {"last.ckpt", "memorization.ckpt"} <= {e.path for e in artifact.manifest.contents}


def test_a_resumed_offline_run_continues_its_history_steps(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [*TINY, "--run_dir=runs/w", "--wandb.log_files=false"]
    assert main(["fit", *args]) == 0
    assert main(["fit", *args, "--ckpt_path=last", "--trainer.max_steps=120"]) == 0
    first, second = offline_files(Path("runs/w"))
    steps = [int(h["_step"]) for h in history(second)]
    assert steps[0] > 60 and steps == sorted(steps) and steps[-1] == 120
    assert max(int(h["_step"]) for h in history(first)) == 60


def test_a_self_hosted_server_key_counts_as_configured(monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(Path.cwd()))
    netrc = Path(".netrc")
    netrc.write_text(f"machine wandb.example.org\n  login user\n  password {'k' * 40}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert resolve_mode(WandbSettings()) == "online"


def test_ensemble_members_each_log_their_own_run_in_one_group(monkeypatch):
    from grokkit.ensemble import run_members

    monkeypatch.setenv("WANDB_MODE", "offline")
    members = [
        [*TINY, f"--run_dir=runs/m{i}", f"--seed_everything={i}", "--wandb.group=grid"]
        for i in range(2)
    ]
    assert run_members(members) == [0, 0]
    ids = set()
    for i in range(2):
        run_dir = Path(f"runs/m{i}")
        (path,) = offline_files(run_dir)
        found = list(records(path))
        (run,) = [r.run for r in found if r.WhichOneof("record_type") == "run"]
        assert run.run_group == "grid" and run.run_id == (run_dir / "wandb_id").read_text().strip()
        ids.add(run.run_id)
        # the member's own rows, all of them, and only them
        rows = [h for h in history(path) if "train/loss" in h]
        metrics = [line.split(",") for line in (run_dir / "metrics.csv").read_text().split()]
        column = metrics[0].index("train/loss")
        assert [row["_step"] for row in rows] == [m[0] for m in metrics[1:]]
        assert [float(row["train/loss"]) for row in rows] == pytest.approx(
            [float(m[column]) for m in metrics[1:]], rel=1e-6
        )
    assert len(ids) == 2
