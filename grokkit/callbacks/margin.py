"""The normalized margin min_i q_i(θ) / ‖θ‖^L: what the late phase maximizes
(arXiv 2311.18817, §1)."""

import lightning.pytorch as pl
import torch

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch
from grokkit.errors import require


def margins(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margins q_i: y·f for ±1 labels (one output), the correct logit minus the
    largest other one for class indices (several outputs)."""
    if outputs.dim() == 1:
        return y.to(outputs.dtype) * outputs
    correct = outputs.gather(1, y.long().unsqueeze(1)).squeeze(1)
    others = outputs.scatter(1, y.long().unsqueeze(1), float("-inf"))
    return correct - others.max(dim=1).values


class NormalizedMargin(EvaluationCallback):
    """Adds ``margin/min`` (min_i q_i on the training set) and ``margin/normalized``
    (min_i q_i / ‖θ‖^L, L the net's homogeneity degree) to each evaluation row.

    The normalized margin is invariant under θ → cθ; gradient descent on a homogeneous net
    drives it up towards a KKT point of the max-margin problem in the late phase. For the
    depth-2 diagonal net its largest possible value is the max-L1-margin of the data.

    Args:
        every: compute at every ``every``-th evaluation point (and always at the first).
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = pl_module.net
        require(
            getattr(net, "degree", None) is not None,
            f"NormalizedMargin needs a homogeneous net, but {type(net).__name__} declares no "
            f"homogeneity degree L (remove the callback or use a homogeneous net)",
        )
        require(
            pl_module.hparams.loss in ("logistic", "cross_entropy", "mse_onehot"),
            f"NormalizedMargin needs a classification loss (logistic, cross_entropy or "
            f"mse_onehot), got model.loss={pl_module.hparams.loss}",
        )

    @torch.no_grad()
    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        x, y = batch["train"]
        q_min = margins(task.net(x).double(), y).min().item()
        row["margin/min"] = q_min
        # ‖θ‖ is the row's param_norm, which the task has just computed
        row["margin/normalized"] = q_min / row["param_norm"] ** task.net.degree
