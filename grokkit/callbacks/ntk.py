"""Watch the empirical NTK move: alignment with the targets, with the initial kernel, and speed."""

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch
from grokkit.errors import require
from grokkit.ntk import centered_alignment, empirical_ntk, frobenius_cosine, kernel_angle


class NTKAlignment(EvaluationCallback):
    """The empirical NTK (trace NTK for nets with several outputs, see ``grokkit.ntk``) on a
    fixed probe subset of the training set, at every ``every``-th evaluation point and at the
    last one (``trainer.max_steps``). Columns added to those rows (other rows get none):

    - ``ntk/target_alignment``: centered kernel-target alignment (Cortes et al. 2012) of K with
      Y = y·yᵀ (±1 labels or real-valued targets, y float) or with the one-hot Gram
      Y_ij = [y_i = y_j] (class indices, y integer).
    - ``ntk/init_alignment``: Frobenius cosine of K with K0, the kernel at the first evaluation
      (step 0, the initialization, before any gradient step). Stays near 1 in the kernel regime.
    - ``ntk/velocity`` (if ``velocity``): the angle between K and the previously computed kernel
      (arccos of their Frobenius cosine, in radians) divided by the gradient-flow time between
      the two rows (the ``time`` column): the angular speed of the kernel's direction per unit
      of t. Dividing the angle, not 1 − cos, keeps it independent of the evaluation spacing
      (1 − cos ≈ angle²/2 grows with the square of the interval). Absent at the first
      computation.

    The probe (``probe_size`` training points, at most all of them, drawn once from ``seed``),
    K0, the last kernel and its time, and the evaluation counter are saved in checkpoints, so a
    resumed run keeps comparing with the kernel at initialization.

    Cost per computation grows like probe_size²·outputs·parameters from Jacobians: negligible
    for the diagonal net (0.01 s at d = 10^4, 128 points), ~25 s on one CPU core for the E3 net
    (97 outputs, 3·10^5 parameters, 128 points); the two-layer ReLU net of E3/E4 and the MLP
    have closed forms (``trace_ntk``, ~probe_size²·width·outputs per layer). With many classes
    and a small probe, most probe points have a class of their own, so Y is close to the
    identity and ``ntk/target_alignment`` says little; ``ntk/init_alignment`` is the
    informative column.

    Args:
        probe_size: number of training points the kernel is computed on (n×n kernel).
        every: compute at every ``every``-th evaluation point (counting step 0 as the first)
            and at the last one; the evaluation schedule is log-spaced, so so are these.
        velocity: also log ``ntk/velocity``.
        seed: seed of the probe draw (independent of the global and data seeds).
        max_bytes: memory budget of the Jacobian chunks (``grokkit.ntk.empirical_ntk``).
    """

    STATE = ("probe", "k0", "k0_step", "previous", "previous_time")

    def __init__(
        self,
        probe_size: int = 128,
        every: int = 5,
        velocity: bool = True,
        seed: int = 0,
        max_bytes: int = 256 * 2**20,
    ) -> None:
        super().__init__(every)
        require(probe_size >= 1, f"NTKAlignment.probe_size must be >= 1, got {probe_size}")
        require(max_bytes >= 1, f"NTKAlignment.max_bytes must be >= 1, got {max_bytes}")
        self.probe_size = probe_size
        self.velocity = velocity
        self.seed = seed
        self.max_bytes = max_bytes
        self.probe: torch.Tensor | None = None  # indices into the training set
        self.k0: torch.Tensor | None = None  # kernels are kept on the CPU, in float64
        self.k0_step: int | None = None
        self.previous: torch.Tensor | None = None
        self.previous_time: float | None = None

    def due(self, trainer: pl.Trainer, task: pl.LightningModule, row: dict[str, float]) -> bool:
        """Off the cadence: the first computation (K0) and the last row of the run."""
        return self.k0 is None or bool(getattr(task, "at_end", False))

    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        if getattr(task, "diverged", False):
            return  # non-finite parameters: nothing meaningful to compute
        x, y = batch["train"]
        probe = self._probe(len(y)).to(x.device)
        # float64, on the CPU; the net's gradients and train/eval mode are left untouched
        k = empirical_ntk(task.net, x[probe], self.max_bytes)
        if self.k0 is None:
            self.k0, self.k0_step = k, int(row["step"])
            if self.k0_step != 0:
                rank_zero_warn(
                    f"NTKAlignment: no kernel at initialization (none in the checkpoint); "
                    f"ntk/init_alignment compares with the kernel at step {self.k0_step}"
                )
        row["ntk/target_alignment"] = centered_alignment(k, alignment_target(y[probe]))
        row["ntk/init_alignment"] = frobenius_cosine(k, self.k0)
        if self.velocity and self.previous is not None:
            elapsed = row["time"] - self.previous_time
            if elapsed > 0:
                row["ntk/velocity"] = kernel_angle(k, self.previous) / elapsed
        self.previous, self.previous_time = k, float(row["time"])

    def _probe(self, n_train: int) -> torch.Tensor:
        if self.probe is None:
            generator = torch.Generator().manual_seed(self.seed)
            size = min(self.probe_size, n_train)
            self.probe = torch.randperm(n_train, generator=generator)[:size].sort().values
        require(
            int(self.probe.max()) < n_train,
            f"NTKAlignment: the saved probe (max index {int(self.probe.max())}) does not fit "
            f"the training set of {n_train} points",
        )
        return self.probe


def alignment_target(y: torch.Tensor) -> torch.Tensor:
    """Float labels or targets as they are; integer class indices as one-hot rows."""
    if y.is_floating_point():
        return y.double()
    return F.one_hot(y.long()).double()
