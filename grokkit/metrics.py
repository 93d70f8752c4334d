"""The evaluation metrics as a torchmetrics ``Metric`` per split: the mean loss (in float64), the
accuracy (classification) and, for the train split of a loss-normalized run, log L.

The metric sums over the chunks of a split it is updated with, so evaluating a split in chunks
(``model.eval_batch_size``) gives the whole split's values: every objective's loss and accuracy
is a mean over samples (``mse_onehot``'s also over classes, the same number per sample), so
Σ_chunks mean·count / Σ count is the split's mean; log L combines the chunks' log-means the same
way in log space.

Made for cost: the task evaluates a few hundred rows per run between chunks of fast gradient
steps, and each torchmetrics call has a fixed Python cost (every attribute it sets on a Metric
goes through ``nn.Module.__setattr__``). So one Metric per split rather than a
``MetricCollection`` of one per quantity (which multiplies that cost by the quantities), float64
tensor states summed in place, ``full_state_update = False``, no ``forward`` (the task calls
``update`` and ``compute``), made once and reset at each row. torchmetrics syncs the states only
when torch.distributed is initialized (a grokkit fit runs on one device).
"""

import math

import torch
from torchmetrics import Metric

from grokkit.objectives import Objective

Tensor = torch.Tensor


class SplitMetrics(Metric):
    """``{split}/loss``, ``{split}/acc`` (when the objective has an accuracy) and, with
    ``log_loss``, ``{split}/log_loss``, over every sample seen since the last reset.

    - loss: the objective's loss in float64, so that a loss below float32's range (confident
      late-phase margins) is still a positive number rather than 0;
    - acc: the mean of the objective's per-sample ``hits``, summed exactly in float64 and the
      mean rounded to float32: the value the objective's float32 ``accuracy`` gives on the whole
      split (phase thresholds compare it, so it stays that value);
    - log_loss: log L from each chunk's log of its mean loss (the objective's ``log_loss``,
      stable where L itself underflows): log Σ n_i·e^(log L_i) − log Σ n_i, never leaving log
      space.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, split: str, objective: Objective, log_loss: bool = False) -> None:
        super().__init__()
        self.prefix = f"{split}/"
        self.objective = objective
        self.with_log_loss = log_loss
        zero = torch.zeros((), dtype=torch.float64)
        # Σ n·(chunk's mean loss) and Σ hits, in one tensor: one in-place add per chunk
        self.add_state("sums", torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", zero, dist_reduce_fx="sum")
        if log_loss:
            self.add_state(
                "log_total",
                torch.full((), -math.inf, dtype=torch.float64),
                dist_reduce_fx=lambda logs: torch.logsumexp(logs, dim=0),
            )

    def update(self, outputs: Tensor, y: Tensor) -> None:
        n = len(y)
        objective = self.objective
        y64 = y.double() if y.is_floating_point() else y
        loss = objective.loss(outputs.double(), y64) * n
        hits = (
            objective.hits(outputs, y).sum(dtype=torch.float64)
            if objective.hits is not None
            else torch.zeros((), dtype=torch.float64, device=loss.device)
        )
        self.sums.add_(torch.stack((loss, hits)))
        self.count.add_(n)
        if self.with_log_loss:
            log_n = objective.log_loss(outputs, y).double() + math.log(n)
            torch.logaddexp(self.log_total, log_n, out=self.log_total)

    def compute(self) -> dict[str, Tensor]:
        means = self.sums / self.count
        values = {f"{self.prefix}loss": means[0]}
        if self.objective.hits is not None:
            values[f"{self.prefix}acc"] = means[1].float()
        if self.with_log_loss:
            values[f"{self.prefix}log_loss"] = self.log_total - self.count.log()
        return values
