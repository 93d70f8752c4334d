"""The interface every grokkit net follows."""

import torch
from torch import nn

from grokkit.errors import require


class HomogeneousNet(nn.Module):
    """A net f(θ; x) with f(cθ; x) = c^degree · f(θ; x) for c > 0.

    Subclasses build their *base* initialization θ̄ in ``__init__``; the task then multiplies
    every parameter by the init scale α (``scale_init_``), so θ0 = α·θ̄ for every model. A net that
    is not homogeneous sets ``degree = None``.
    """

    degree: int | None = None
    # f(θ̄; x) = 0 for every x: the theory's large-init picture (the kernel regime around an
    # output that stays ~0 while ‖θ‖ is large) needs it; subclasses say when it holds
    zero_output_at_init: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.alpha = 1.0

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ConfigError if ``x`` does not fit this net (e.g. a dimension that disagrees with
        the data's); called on every evaluation, so keep it to shape checks."""

    @torch.no_grad()
    def scale_init_(self, alpha: float) -> None:
        """Scale the base initialization θ̄ to θ0 = α·θ̄ (call once, before training)."""
        for p in self.parameters():
            p.mul_(alpha)
        self.alpha = alpha


def check_operand_pairs(x: torch.Tensor, p: int) -> None:
    """Modular-arithmetic inputs: rows (a, b) of operands below ``p`` (``model.net.p``)."""
    require(
        x.dim() == 2 and x.shape[1] == 2 and int(x.max()) < p,
        f"model.net.p={p} does not fit the data's operands (max {int(x.max())})",
    )
