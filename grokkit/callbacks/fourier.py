"""What a modular-arithmetic net learned, in Fourier terms (Nanda et al. 2023, "Progress
measures for grokking via mechanistic interpretability"): the nets that grok modular addition
represent each operand by a few frequencies ω_k = 2πk/p and read out cos(ω_k(a + b − c)); the
max-margin solutions the late phase converges to are Fourier-sparse as well (Morwani et al.
2023), the late-phase bias of arXiv 2311.18817 §3."""

import math
from functools import lru_cache

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from grokkit.callbacks.base import EvaluationCallback
from grokkit.data.full_batch import Batch
from grokkit.errors import require

# the sign of b in the phase a ± b − c that each supported operation's logits depend on
SIGNS = {"add": 1, "sub": -1}


@lru_cache(maxsize=8)  # the same p at every evaluation row (callers do not modify it)
def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, list[int]]:
    """The real orthonormal Fourier basis of functions on Z_p, one row per basis vector, without
    the constant: cos(2πkx/p) and sin(2πkx/p) for k = 1 … ⌊p/2⌋ (sin dropped where 2k = p, where
    it is 0); and the frequency k of each row."""
    x = torch.arange(p, dtype=dtype)
    rows, freqs = [], []
    for k in range(1, p // 2 + 1):
        for wave in (torch.cos, torch.sin):
            if wave is torch.sin and 2 * k == p:
                continue
            v = wave(2 * math.pi * k * x / p)
            rows.append(v / v.norm())
            freqs.append(k)
    return torch.stack(rows), freqs


def column_frequency_energy(embeddings: list[torch.Tensor]) -> torch.Tensor:
    """Energy per frequency k = 1 … ⌊p/2⌋ (rows) of each embedding column (columns) of operand
    embeddings (each (p, d), row x = residue x; summed over the embeddings): the squared cos
    and sin coefficients. For TwoLayerReLU a column is one hidden unit's input weights."""
    p = embeddings[0].shape[0]
    basis, freqs = fourier_basis(p)
    index = torch.tensor(freqs) - 1
    energy = torch.zeros(p // 2, embeddings[0].shape[1], dtype=torch.float64)
    for e in embeddings:
        coefficients = basis @ e.detach().double().cpu()  # (basis rows, d)
        energy.index_add_(0, index, coefficients**2)
    return energy


def frequency_energy(embeddings: list[torch.Tensor]) -> torch.Tensor:
    """Energy per frequency k = 1 … ⌊p/2⌋ of operand embeddings, over all their columns."""
    return column_frequency_energy(embeddings).sum(1)


def column_top_share(column_energy: torch.Tensor) -> float:
    """Share of each column's energy in its own strongest frequency, averaged over the columns
    weighted by their energy (near-dead units count little): → 1 when every unit uses one
    frequency, as in the max-margin solutions of Morwani et al. 2023, even if the units use
    many different frequencies between them."""
    total = column_energy.sum(0)
    if total.sum() == 0:
        return 0.0
    return (column_energy.max(0).values.sum() / total.sum()).item()


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, → 1 when one holds all."""
    v = values.double().sort().values
    n, total = len(v), v.sum().item()
    if total == 0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * ranks - n - 1) * v).sum().item() / (n * total)


def grid_phase(p: int, sign: int) -> torch.Tensor:
    """(a ± b − c) mod p on the grid, (p, p, p) indexed [a, b, c]."""
    r = torch.arange(p)
    return (r[:, None, None] + sign * r[None, :, None] - r[None, None, :]) % p


def key_direction_projection(
    logits: torch.Tensor, keys: list[int], phase: torch.Tensor
) -> torch.Tensor:
    """The projection of logits on the grid, (p, p, p) indexed [a, b, c], on the key
    frequencies' directions cos(ω_k·m) and sin(ω_k·m), m = ``phase`` (e.g. a + b − c mod p);
    as a function g of m, so the projection is g[phase]. Those directions depend on the grid
    only through m, so each coefficient is a sum over m of the logits' sums S[m] per phase
    value: one pass over the grid whatever the number of keys. They are orthogonal on the
    grid, each of squared norm p³/2 (p³ for the cosine where 2k = p, and the sine is 0)."""
    p = logits.shape[0]
    sums = torch.zeros(p, dtype=logits.dtype, device=logits.device)
    sums.index_add_(0, phase.reshape(-1), logits.reshape(-1))
    m = torch.arange(p, dtype=logits.dtype, device=logits.device)
    g = torch.zeros(p, dtype=logits.dtype, device=logits.device)
    for k in keys:
        for wave in (torch.cos(2 * math.pi * k * m / p), torch.sin(2 * math.pi * k * m / p)):
            norm2 = p * p * (wave * wave).sum()  # each m occurs p² times on the grid
            if norm2 > 1e-9 * p**3:
                g += ((sums * wave).sum() / norm2) * wave
    return g


def restricted_and_excluded_logits(
    logits: torch.Tensor, keys: list[int], sign: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits on the whole grid, (p, p, p) indexed [a, b, c], split into their projection on
    the key frequencies' directions cos(ω_k(a ± b − c)) and sin(ω_k(a ± b − c)) (restricted)
    and the rest (excluded)."""
    phase = grid_phase(logits.shape[0], sign)
    projection = key_direction_projection(logits, keys, phase)[phase]
    return projection, logits - projection


class FourierProbe(EvaluationCallback):
    """Adds ``fourier/`` columns to each evaluation row of a modular addition (or subtraction)
    run with a net that exposes its operand embeddings (``operand_embeddings()``: the
    first-layer weights of ``TwoLayerReLU``, the token embedding of ``ModularTransformer``):

    - ``fourier/top_share``: the share of the embeddings' (non-constant) energy in their
      ``top_k`` strongest frequencies (top_k/⌊p/2⌋ for a random embedding, → 1 when sparse);
    - ``fourier/gini``: Gini coefficient of the energy over all ⌊p/2⌋ frequencies;
    - ``fourier/unit_top1_share``: each embedding column's (hidden unit's, for TwoLayerReLU)
      share of its energy in its own strongest frequency, energy-weighted mean: a net can be
      sparse per unit while its units spread over many frequencies;
    - ``fourier/key_1`` … ``fourier/key_<top_k>``: those frequencies k (ω = 2πk/p), strongest
      first;
    - ``fourier/restricted_loss``: training loss with the logits (computed on all p² pairs)
      projected on the key frequencies' directions cos/sin(ω_k(a ± b − c)), as in Nanda et al.:
      low once the net computes the answer through those frequencies;
    - ``fourier/excluded_loss``: training loss with those directions removed: high once the
      net relies on them (it memorized without them before).

    Cost per row: one forward pass on the p² pairs and one pass over their p³ logits (~0.1 s
    on one core for the paper's p = 97 net, about one gradient evaluation).

    Args:
        top_k: number of key frequencies.
        every: compute at every ``every``-th evaluation point (and always at the first).
    """

    def __init__(self, top_k: int = 5, every: int = 1) -> None:
        super().__init__(every)
        require(top_k >= 1, f"FourierProbe.top_k must be >= 1, got {top_k}")
        self.top_k = top_k
        self._sign = 1
        self._phase: torch.Tensor | None = None  # (a ± b − c) mod p on the p³ grid
        self._pairs: torch.Tensor | None = None  # all p² pairs (a, b), a-major

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        operation = getattr(data, "operation", None)
        require(
            operation in SIGNS,
            f"FourierProbe needs modular addition or subtraction data (ModularArithmeticData "
            f"with operation add or sub), got {type(data).__name__}"
            + (f" with operation {operation!r}" if operation else ""),
        )
        require(
            callable(getattr(pl_module.net, "operand_embeddings", None)),
            f"FourierProbe needs a net with operand embeddings (TwoLayerReLU or "
            f"ModularTransformer), got {type(pl_module.net).__name__}",
        )
        require(
            self.top_k <= data.p // 2,
            f"FourierProbe.top_k={self.top_k} exceeds the {data.p // 2} frequencies of p={data.p}",
        )
        self._sign = SIGNS[operation]
        self._phase = grid_phase(data.p, self._sign)
        r = torch.arange(data.p)
        self._pairs = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)

    @torch.no_grad()
    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        net = task.net
        per_column = column_frequency_energy(net.operand_embeddings())
        energy = per_column.sum(1)
        order = energy.argsort(descending=True)
        keys = [int(k) + 1 for k in order[: self.top_k]]
        row["fourier/top_share"] = (energy[order[: self.top_k]].sum() / energy.sum()).item()
        row["fourier/gini"] = gini(energy)
        row["fourier/unit_top1_share"] = column_top_share(per_column)
        for i, k in enumerate(keys, start=1):
            row[f"fourier/key_{i}"] = float(k)
        x_train, y_train = batch["train"]
        p = net.p
        logits = net(self._pairs.to(x_train.device)).double().reshape(p, p, p)
        phase = self._phase.to(logits.device)
        g = key_direction_projection(logits, keys, phase)
        a, b = x_train[:, 0], x_train[:, 1]
        restricted = g[phase[a, b]]  # (n_train, p): the training pairs' rows only
        excluded = logits[a, b] - restricted
        for name, part in (("restricted", restricted), ("excluded", excluded)):
            row[f"fourier/{name}_loss"] = F.cross_entropy(part, y_train.long()).item()
