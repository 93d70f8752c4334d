"""Evaluation rows go through Lightning's logging: callback_metrics holds them, a user's own
logger receives them, and EarlyStopping / ModelCheckpoint(monitor=...) work on them."""

import csv
import json
from pathlib import Path

import pytest
from conftest import SMALL_E1

import grokkit.session
from grokkit.cli import main
from grokkit.lightning_cli import make_cli

LIGHTNING_CALLBACKS = """
trainer:
  logger:
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args:
        save_dir: user_logs
  callbacks+:
    - class_path: lightning.pytorch.callbacks.EarlyStopping
      init_args:
        monitor: test/acc
        mode: max
        stopping_threshold: 0.97
        patience: 1000000
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        monitor: test/acc
        mode: max
        every_n_train_steps: 1
        dirpath: best
        filename: "best-{step}"
"""


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """curves.png is not under test here, and drawing it is most of a small run's time."""
    monkeypatch.setattr(grokkit.session, "plot_run", lambda run_dir: None)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_early_stopping_after_grokking_a_user_logger_and_a_monitored_checkpoint():
    Path("lightning.yaml").write_text(LIGHTNING_CALLBACKS)
    args = [*SMALL_E1, "--config=lightning.yaml", "--trainer.max_steps=1500", "--run_dir=runs/es"]
    assert main(["fit", *args]) == 0
    summary = json.loads(Path("runs/es/summary.json").read_text())
    # stopped at the first row at or above 97% test accuracy, long before max_steps: completed
    assert summary["status"] == "completed" and summary["steps"] < 1500
    assert summary["test/acc"] >= 0.97 and summary["grokking_step"] is not None
    ours = csv_rows(Path("runs/es/metrics.csv"))
    assert all(float(r["test/acc"]) < 0.97 for r in ours[:-1])
    # the user's CSVLogger got every row
    theirs = csv_rows(next(Path("user_logs").rglob("metrics.csv")))
    assert [int(float(r["step"])) for r in theirs] == [int(r["step"]) for r in ours]
    assert float(theirs[-1]["test/acc"]) == pytest.approx(float(ours[-1]["test/acc"]))
    # ModelCheckpoint(monitor="test/acc") kept the best row's state
    assert [p.name for p in Path("best").iterdir()] == [f"best-step={summary['steps']}.ckpt"]


def test_callback_metrics_hold_the_last_row_in_a_plain_trainer_fit():
    """As in a notebook: the CLI builds the objects, the user calls trainer.fit."""
    cli = make_cli([*SMALL_E1, "--trainer.max_steps=50"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert metrics["step"].item() == 50
    for key in ("train/loss", "test/acc", "param_norm", "margin/normalized"):
        assert metrics[key].item() == pytest.approx(cli.model.last_row[key], rel=1e-6)
