"""The weights over time: checkpoints at memorization, grokking and misgrokking, and at
log-spaced evaluation points, beside ``last.ckpt`` in the run's ``checkpoints/``.

Each snapshot is a whole Lightning checkpoint (``grokkit validate --ckpt_path RUN/checkpoints/
grokking.ckpt`` evaluates it; ``grokkit fit --ckpt_path`` on it branches a new run directory).
``checkpoints/snapshots.json`` indexes them: ``grokkit.callbacks.snapshots.list_snapshots``.
"""

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from grokkit.callbacks.base import EvaluationCallback
from grokkit.callbacks.phases import PhaseDetector
from grokkit.data.full_batch import Batch
from grokkit.errors import require
from grokkit.lightning_adapter import save_checkpoint_atomic

INDEX = "snapshots.json"
PHASES = ("memorization", "grokking", "misgrokking")


class Snapshots(EvaluationCallback):
    """Save snapshots of the run (configured by ``snapshots.*``; always on in ``grokkit fit``).

    Args:
        log_spaced: about this many snapshots at evaluation points spread evenly over the
            evaluation rows (which are log-spaced in steps or flow time), the initialization
            included; 0: none.
        phases: a snapshot at the first evaluation row at or after each phase the phase
            detector finds (memorization, grokking, misgrokking).
    """

    STATE = ("seen",)

    def __init__(self, log_spaced: int = 10, phases: bool = True) -> None:
        require(log_spaced >= 0, f"snapshots.log_spaced must be >= 0, got {log_spaced}")
        super().__init__()
        self.log_spaced, self.phases = log_spaced, phases
        self.directory: Path | None = None  # the run's checkpoints/ (set by the fit session)
        self.seen: list[str] = []  # phases already saved
        self.pending: list[str] = []  # log-spaced snapshots due at the end of this step

    def on_train_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        rows = task.hparams.eval_points + 1
        self.every = max(1, round(rows / self.log_spaced)) if self.log_spaced else rows + 1
        if self.log_spaced and trainer.global_step == 0 and self.directory is not None:
            self._save(trainer, task, f"step-{0:09d}", "log-spaced", {"step": 0, "time": 0.0})

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        # (the row at step 0 is saved at the start; a row is only final once its step ends)
        if self.log_spaced and row["step"] > 0:
            self.pending.append(f"step-{int(row['step']):09d}")

    def on_train_batch_end(self, trainer: pl.Trainer, task: pl.LightningModule, *_: Any) -> None:
        if self.directory is None:
            return
        row = task.last_row or {}
        for name in self.pending:
            self._save(trainer, task, name, "log-spaced", row)
        self.pending = []
        detector = next((c for c in trainer.callbacks if isinstance(c, PhaseDetector)), None)
        for phase in PHASES if self.phases and detector is not None else ():
            if phase not in self.seen and getattr(detector, f"{phase}_step") is not None:
                self.seen.append(phase)
                self._save(trainer, task, phase, phase, row)

    def _save(
        self,
        trainer: pl.Trainer,
        task: pl.LightningModule,
        name: str,
        reason: str,
        row: dict[str, float],
    ) -> None:
        assert self.directory is not None
        save_checkpoint_atomic(trainer, self.directory / f"{name}.ckpt")
        index = read_index(self.directory)
        index[name] = {
            "file": f"{name}.ckpt",
            "reason": reason,
            "step": trainer.global_step,
            "time": task.flow_time,
            "test/acc": row.get("test/acc"),
        }
        tmp = self.directory / (INDEX + ".tmp")
        tmp.write_text(json.dumps(index, indent=2) + "\n")
        tmp.replace(self.directory / INDEX)


def read_index(directory: Path) -> dict[str, dict[str, Any]]:
    path = Path(directory) / INDEX
    return json.loads(path.read_text()) if path.is_file() else {}


def list_snapshots(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run's snapshots, by step: each with ``path``, ``reason`` (log-spaced, memorization,
    grokking, misgrokking), ``step``, flow ``time`` and ``test/acc`` at the snapshot."""
    directory = Path(run_dir) / "checkpoints"
    entries = [
        {**entry, "path": directory / entry.pop("file")} for entry in read_index(directory).values()
    ]
    return sorted(
        (e for e in entries if e["path"].is_file()), key=lambda e: (e["step"], e["reason"])
    )
