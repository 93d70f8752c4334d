"""FitSession's periodic checkpoint: time-based, atomic, and actually firing under GrokTask's
manual optimization (Lightning's own time-based ModelCheckpoint does not)."""

from datetime import timedelta
from pathlib import Path

from conftest import TINY

import grokkit.session as session
from grokkit.cli import main
from grokkit.session import PeriodicCheckpoint


class FakeTrainer:
    def __init__(self) -> None:
        self.saved: list[str] = []

    def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
        Path(path).write_text(f"checkpoint {len(self.saved)}")
        self.saved.append(Path(path).name)


def test_saves_once_the_interval_has_passed_and_atomically(tmp_path):
    now = [100.0]
    target = tmp_path / "last.ckpt"
    callback = PeriodicCheckpoint(target, timedelta(seconds=60), clock=lambda: now[0])
    trainer = FakeTrainer()
    for t in (110.0, 159.9):
        now[0] = t
        callback.on_train_batch_end(trainer)
    assert trainer.saved == [] and not target.exists()
    now[0] = 160.0
    callback.on_train_batch_end(trainer)
    now[0] = 200.0  # 40 s after that save: not yet again
    callback.on_train_batch_end(trainer)
    assert trainer.saved == ["last.ckpt.tmp"]  # written aside, then renamed over last.ckpt
    assert target.read_text() == "checkpoint 0" and sorted(p.name for p in tmp_path.iterdir()) == [
        "last.ckpt"
    ]


def test_a_fit_saves_during_training_not_only_at_the_end(monkeypatch):
    saves: list[int] = []
    real = session.save_checkpoint_atomic

    def counting(trainer, path):
        saves.append(trainer.global_step)
        real(trainer, path)

    monkeypatch.setattr(session, "CHECKPOINT_EVERY", timedelta(0))
    monkeypatch.setattr(session, "save_checkpoint_atomic", counting)
    assert main(["fit", *TINY, "--trainer.callbacks=[]", "--run_dir=runs/ckpt"]) == 0
    assert len(saves) > 2 and saves[0] < 60 and saves[-1] == 60  # mid-run, then the final one
    assert (Path("runs/ckpt") / "checkpoints" / "last.ckpt").is_file()
    assert not list(Path("runs/ckpt/checkpoints").glob("*.tmp"))
