"""grokkit from your own Lightning script: a small E1 (sparse linear labels on {±1}^d, a depth-2
diagonal net) that memorizes at once, stays near chance on the test set, then groks."""

import lightning.pytorch as pl

from grokkit import DiagonalNet, EvaluationCallback, GrokTask, PhaseDetector, SparseLinearData

rows = []


class Rows(EvaluationCallback):  # sees every evaluation row, a dict of metrics
    def on_row(self, trainer, task, batch, row):
        rows.append(dict(row))


pl.seed_everything(0)
data = SparseLinearData(d=1000, k=3, n_train=64, n_test=1000, seed=0)
task = GrokTask(DiagonalNet(d=1000), alpha=128, lr=0.1, weight_decay=0.1, eval_points=100)
phases = PhaseDetector(grokking_threshold=0.95)
trainer = pl.Trainer(
    max_steps=1000,  # full-batch gradient steps: flow time t = 1000 × lr = 100
    accelerator="cpu",
    callbacks=[phases, Rows()],
    # grokkit fit's own settings: the task evaluates and logs on its log-spaced schedule
    devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
    enable_model_summary=False, num_sanity_val_steps=0,
)
trainer.fit(task, datamodule=data)

print(f"{len(rows)} rows; the last: {task.last_row}")
print(f"memorized at t = {phases.memorization_time:.3g}, grokked at t = {phases.grokking_time:.4g}")
print(f"the theory's switch time ln(α)/λ = {task.predicted_transition_time:.4g}")
