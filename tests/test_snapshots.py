"""The checkpoint trajectory: snapshots at memorization, grokking and log-spaced evaluation
points, each a loadable checkpoint, listed with their step and time."""

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_E1

import grokkit.session
from grokkit.callbacks import list_snapshots
from grokkit.cli import main
from grokkit.lightning_cli import make_cli

RUN = Path("runs/traj")


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """curves.png is not under test here, and drawing it is most of a small run's time."""
    monkeypatch.setattr(grokkit.session, "plot_run", lambda run_dir: None)


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_grokking_run_keeps_phase_and_log_spaced_snapshots():
    assert main(["fit", *SMALL_E1, "--trainer.max_steps=1500", f"--run_dir={RUN}"]) == 0
    summary = json.loads((RUN / "summary.json").read_text())
    snapshots = list_snapshots(RUN)
    by_reason = {s["reason"]: s for s in snapshots}
    assert {"memorization", "grokking", "log-spaced"} <= set(by_reason)
    log_spaced = [s["step"] for s in snapshots if s["reason"] == "log-spaced"]
    assert log_spaced[0] == 0 and log_spaced[-1] == 1500 and 9 <= len(log_spaced) <= 12
    assert all(b / a > 1.2 for a, b in zip(log_spaced[1:], log_spaced[2:], strict=False))
    recorded = {int(r["step"]): r for r in rows(RUN)}
    for snapshot in snapshots:  # each is the state at an evaluation row, as that row says
        state = torch.load(snapshot["path"], map_location="cpu", weights_only=True)
        assert state["global_step"] == snapshot["step"] and snapshot["step"] in recorded
        assert snapshot["time"] == float(recorded[snapshot["step"]]["time"])
    # the phase snapshots: the first evaluation rows at or after the detected crossings
    grokked = by_reason["grokking"]
    assert grokked["step"] >= summary["grokking_step"] and grokked["test/acc"] >= 0.95
    assert by_reason["memorization"]["step"] >= summary["memorization_step"]

    # loadable: `grokkit validate --ckpt_path` on it evaluates the net at grokking
    argv = ["validate", f"--config={RUN / 'config.yaml'}", f"--ckpt_path={grokked['path']}"]
    assert main(argv) == 0
    cli = make_cli([*SMALL_E1, "--trainer.max_steps=1500"], run=False)
    (metrics,) = cli.trainer.validate(cli.model, cli.datamodule, ckpt_path=grokked["path"])
    assert metrics["test/acc"] == pytest.approx(grokked["test/acc"], abs=1e-6)


def test_fitting_from_a_snapshot_branches_a_new_run_and_keeps_the_old_one_whole():
    assert main(["fit", *SMALL_E1, "--trainer.max_steps=200", f"--run_dir={RUN}"]) == 0
    before = (RUN / "metrics.csv").read_bytes()
    middle = next(s for s in list_snapshots(RUN) if 0 < s["step"] < 200)
    args = ["fit", f"--config={RUN / 'config.yaml'}", f"--ckpt_path={middle['path']}"]
    assert main([*args, "--run_dir=runs/branch"]) == 0
    assert (RUN / "metrics.csv").read_bytes() == before
    assert int(rows(Path("runs/branch"))[0]["step"]) > middle["step"]


def test_snapshots_can_be_turned_off():
    off = ["--snapshots.log_spaced=0", "--snapshots.phases=false"]
    assert main(["fit", *SMALL_E1, "--trainer.max_steps=200", f"--run_dir={RUN}", *off]) == 0
    assert list_snapshots(RUN) == []
    assert sorted(p.name for p in (RUN / "checkpoints").iterdir()) == ["last.ckpt"]
