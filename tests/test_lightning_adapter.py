"""Pins the Lightning behaviour grokkit.lightning_adapter relies on: a Lightning upgrade that
changes it fails here, not in a user's run."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.utils.data import DataLoader, TensorDataset

from grokkit.lightning_adapter import (
    checkpoint_global_step,
    count_optimizer_steps,
    publish_row,
    run_early_stopping,
)

CHUNK = 5  # raw optimizer steps per Lightning training step, as GrokTask's chunks


class ChunkedModule(pl.LightningModule):
    """Manual optimization with the raw torch optimizer, counted by the adapter."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.w = torch.nn.Parameter(torch.ones(3))
        self.raw_steps = 0
        self.seen_global_steps: list[int] = []

    def training_step(self, batch, batch_idx):
        self.seen_global_steps.append(self.global_step)
        optimizer = self.optimizers().optimizer
        for _ in range(CHUNK):
            optimizer.zero_grad()
            (self.w**2).sum().backward()
            optimizer.step()
            self.raw_steps += 1
        count_optimizer_steps(self.trainer, CHUNK)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)


def _trainer(tmp_path, max_steps: int) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )


def test_counted_steps_are_global_steps_and_max_steps_stops_the_fit(tmp_path):
    module = ChunkedModule()
    trainer = _trainer(tmp_path, max_steps=4 * CHUNK)
    trainer.fit(module)
    assert trainer.global_step == module.raw_steps == 4 * CHUNK
    assert module.seen_global_steps == [0, 5, 10, 15]  # global_step reads the counter at once


def test_checkpoint_keeps_the_counted_steps_and_resume_restores_them(tmp_path):
    module = ChunkedModule()
    trainer = _trainer(tmp_path, max_steps=2 * CHUNK)
    trainer.fit(module)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    assert checkpoint_global_step(path) == 2 * CHUNK

    resumed = ChunkedModule()
    trainer = _trainer(tmp_path, max_steps=4 * CHUNK)
    trainer.fit(resumed, ckpt_path=path)
    assert resumed.seen_global_steps == [10, 15]  # continues from the checkpoint's step
    assert trainer.global_step == 4 * CHUNK


class PublishingModule(ChunkedModule):
    """Publishes a row per training step, as GrokTask does at its evaluation points, and lets
    each EarlyStopping check it."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_by_early_stopping = False

    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)
        publish_row(self.trainer, {"score": float(self.global_step), "step": self.global_step})
        self.stopped_by_early_stopping = run_early_stopping(self.trainer)


def test_a_published_row_stays_in_callback_metrics_and_early_stopping_sees_it(tmp_path):
    module = PublishingModule()
    trainer = _trainer(tmp_path, max_steps=20 * CHUNK)
    stop = EarlyStopping(monitor="score", mode="max", stopping_threshold=15, patience=10**6)
    trainer.callbacks.append(stop)
    trainer.fit(module)
    # the adapter's check stopped it once a row reached 15 (this toy's one-batch epochs may
    # run one more before Lightning acts on should_stop), long before max_steps
    assert module.stopped_by_early_stopping and 3 * CHUNK <= trainer.global_step <= 4 * CHUNK
    assert trainer.callback_metrics["score"].item() == trainer.global_step  # the last row
    assert trainer.callback_metrics["score"].dtype == torch.float64
