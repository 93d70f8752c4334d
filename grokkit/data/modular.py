"""E3/E4: binary operations modulo a prime, as (a, b) index pairs with a class label."""

from typing import Literal, get_args

import torch

from grokkit.data.full_batch import Batch, FullBatchDataModule
from grokkit.errors import require

Operation = Literal["add", "sub", "mul", "div", "x2_plus_xy", "x3_plus_xy", "max"]
OPERATIONS: tuple[str, ...] = get_args(Operation)


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, int(n**0.5) + 1))


def operation_table(a: torch.Tensor, b: torch.Tensor, p: int, operation: str) -> torch.Tensor:
    """The label of each pair (a, b): a∘b mod p (max: the larger of the two)."""
    if operation == "add":
        return (a + b) % p
    if operation == "sub":
        return (a - b) % p
    if operation == "mul":
        return (a * b) % p
    if operation == "div":  # a · b^(p−2) = a / b in the field Z_p (b ≠ 0)
        inverse = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])
        return (a * inverse[b]) % p
    if operation == "x2_plus_xy":
        return (a * a + a * b) % p
    if operation == "x3_plus_xy":
        return (a * a * a + a * b) % p
    if operation == "max":
        return torch.maximum(a, b)
    raise ValueError(f"unknown operation {operation!r}")


class ModularArithmeticData(FullBatchDataModule):
    """All pairs (a, b) ∈ Z_p² (b ≠ 0 for division) labelled a∘b, split at random into train and
    test. Inputs are the index pairs, shape (n, 2): models look them up in an embedding, the same
    function as a linear layer on concatenated one-hots and far cheaper.

    Args:
        p: modulus (prime for "div").
        operation: add, sub, mul, div, x2_plus_xy (a²+ab), x3_plus_xy (a³+ab) or max.
        train_fraction: fraction of all pairs used for training, in (0, 1).
        seed: data seed (the split), separate from the model seed.
    """

    def __init__(
        self, p: int = 97, operation: Operation = "add", train_fraction: float = 0.4, seed: int = 0
    ) -> None:
        super().__init__(seed)
        require(p >= 2, f"data.p must be >= 2, got {p}")
        require(
            operation in OPERATIONS,
            f"data.operation must be one of {', '.join(OPERATIONS)}, got {operation!r}",
        )
        require(
            operation != "div" or is_prime(p),
            f"data.p must be prime for operation 'div' (b must be invertible), got {p}",
        )
        require(
            0 < train_fraction < 1, f"data.train_fraction must be in (0, 1), got {train_fraction}"
        )
        self.p, self.operation, self.train_fraction = p, operation, train_fraction
        self.num_classes = p

    def build(self) -> Batch:
        a, b = torch.meshgrid(torch.arange(self.p), torch.arange(self.p), indexing="ij")
        a, b = a.flatten(), b.flatten()
        if self.operation == "div":
            a, b = a[b != 0], b[b != 0]
        x = torch.stack([a, b], dim=1)
        y = operation_table(a, b, self.p, self.operation)
        order = torch.randperm(len(y), generator=self.generator())
        n_train = min(max(1, round(self.train_fraction * len(y))), len(y) - 1)
        train, test = order[:n_train], order[n_train:]
        return {"train": (x[train], y[train]), "test": (x[test], y[test])}
