"""The places grokkit relies on Lightning internals, in one module.

tests/test_lightning_adapter.py pins each behaviour used here, so a Lightning upgrade that
changes one fails a test rather than a run.
"""

import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping


def count_optimizer_steps(trainer: pl.Trainer, n: int) -> None:
    """Count ``n`` raw optimizer steps in Lightning's manual-optimization progress.

    GrokTask runs a whole chunk of gradient steps inside one Lightning training step with the
    raw torch optimizer (no per-step hooks). ``trainer.global_step`` reads this counter, so
    ``max_steps``, checkpoints and resume all see gradient steps.
    """
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for tracker in (progress.total, progress.current):
        tracker.ready += n
        tracker.completed += n


def publish_row(trainer: pl.Trainer, row: dict[str, float]) -> None:
    """Put an evaluation row into ``trainer.callback_metrics`` (float64 tensors), where
    ``self.log`` would put it, for EarlyStopping, ModelCheckpoint(monitor=...) and notebooks.

    ``self.log_dict`` costs milliseconds per row (measured 4-6 ms for a 10-column row: its
    result collection is processed after every Lightning step), which is several percent of a
    small model's run; ``trainer.callback_metrics`` is the connector's own dict, updated here.
    """
    trainer.callback_metrics.update(
        {key: torch.tensor(value, dtype=torch.float64) for key, value in row.items()}
    )


def run_early_stopping(trainer: pl.Trainer) -> bool:
    """Let each ``EarlyStopping`` check the row just logged; True if one stopped the run.

    Lightning checks them at an epoch's end or after validation, and GrokTask's one endless
    epoch has neither until the run ends: the check runs at each evaluation row instead.
    """
    stopped = False
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping):
            callback._run_early_stopping_check(trainer)
            stopped = stopped or (
                trainer.should_stop and callback.stopping_reason_message is not None
            )
    return stopped


def save_checkpoint_atomic(trainer: pl.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary file renamed over ``path``: a process killed
    mid-save leaves the previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint's contents, tensors and plain types only (``weights_only``: a
    checkpoint given on the command line must not run code when it is read)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_global_step(path: str | Path) -> int:
    """The gradient step a Lightning checkpoint was saved at (its ``global_step`` entry)."""
    return int(load_checkpoint(path)["global_step"])
