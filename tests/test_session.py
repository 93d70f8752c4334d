"""FitSession's periodic checkpoint: time-based, atomic, and actually firing under GrokTask's
manual optimization (Lightning's own time-based ModelCheckpoint does not)."""

from pathlib import Path

from conftest import TINY

import grokkit.session as session
from grokkit.cli import main
from grokkit.session import PeriodicCheckpoint


class FakeTrainer:
    """Writes a stand-in checkpoint, taking ``cost`` seconds of the fake clock to do it."""

    def __init__(self, now: list[float], cost: float) -> None:
        self.saved: list[str] = []
        self.now, self.cost = now, cost

    def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
        Path(path).write_text(f"checkpoint {len(self.saved)}")
        self.saved.append(Path(path).name)
        self.now[0] += self.cost


def test_a_costly_save_waits_for_the_interval_and_is_atomic(tmp_path):
    now, summaries = [100.0], []
    target = tmp_path / "last.ckpt"
    callback = PeriodicCheckpoint(
        target, 60.0, on_save=lambda: summaries.append(now[0]), clock=lambda: now[0]
    )
    trainer = FakeTrainer(now, cost=2.0)
    callback.on_train_batch_end(trainer)  # the first save measures the cost (2 s)
    for t in (110.0, 161.9):  # < 60 s after the save ended at 102
        now[0] = t
        callback.on_train_batch_end(trainer)
    assert trainer.saved == ["last.ckpt.tmp"] and summaries == [102.0]
    now[0] = 162.0
    callback.on_train_batch_end(trainer)
    assert trainer.saved == ["last.ckpt.tmp"] * 2 and summaries == [102.0, 164.0]
    # written aside, then renamed over last.ckpt: no temporary file is left
    assert target.read_text() == "checkpoint 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_cheap_save_is_made_at_every_evaluation_point_it_costs_at_most_1_percent_of(tmp_path):
    now = [0.0]
    callback = PeriodicCheckpoint(tmp_path / "last.ckpt", 60.0, clock=lambda: now[0])
    trainer = FakeTrainer(now, cost=0.01)
    saved_at = []
    for t in (1.0, 1.5, 2.02, 2.5, 3.1):  # a save needs 100 × 0.01 s = 1 s since the last
        now[0] = t
        before = len(trainer.saved)
        callback.on_train_batch_end(trainer)
        saved_at += [t] * (len(trainer.saved) - before)
    assert saved_at == [1.0, 2.02, 3.1]  # far more often than every 60 s


def test_a_fit_saves_during_training_not_only_at_the_end(monkeypatch):
    saves: list[int] = []
    real = session.save_checkpoint_atomic

    def counting(trainer, path):
        saves.append(trainer.global_step)
        real(trainer, path)

    monkeypatch.setattr(session, "save_checkpoint_atomic", counting)
    argv = [
        "fit",
        *TINY,
        "--trainer.callbacks=[]",
        "--checkpoint_every=1e-9",
        "--run_dir=runs/ckpt",
    ]
    assert main(argv) == 0
    assert len(saves) > 2 and saves[0] < 60 and saves[-1] == 60  # mid-run, then the final one
    assert (Path("runs/ckpt") / "checkpoints" / "last.ckpt").is_file()
    assert not list(Path("runs/ckpt/checkpoints").glob("*.tmp"))
