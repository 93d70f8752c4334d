"""A test-only callback for tests/test_sweep_chaos.py, imported by its sweep's ``grokkit fit``
processes through PYTHONPATH (no test hook in grokkit itself). It picks a run by its learning
rate: one raises inside training, others hold mid-training while a file exists, so that the test
can SIGKILL them or stop their sweep at a moment it knows."""

import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class Chaos(pl.Callback):
    """After gradient step ``at_step``: the run with learning rate ``raise_lr`` raises; runs with
    a learning rate in ``hold_lrs`` touch ``<hold_file>.<lr>`` and wait while ``hold_file``
    exists (or until they are asked to stop)."""

    def __init__(
        self,
        hold_file: str,
        at_step: int = 50,
        raise_lr: float | None = None,
        hold_lrs: list[float] | None = None,
    ) -> None:
        self.hold_file, self.at_step = Path(hold_file), at_step
        self.raise_lr, self.hold_lrs = raise_lr, hold_lrs or []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        lr = pl_module.hparams.lr
        if trainer.global_step < self.at_step:
            return
        if lr == self.raise_lr:
            raise RuntimeError(f"chaos: the run with lr = {lr} raises at {trainer.global_step}")
        if lr in self.hold_lrs:
            Path(f"{self.hold_file}.{lr:g}").touch()
            while self.hold_file.exists() and not pl_module.stop_requested:
                time.sleep(0.05)
