"""A one-layer transformer on modular arithmetic, in the style of Power et al. (2022) and
Nanda et al. (2023): tokens [a, b, =], logits read at the last position."""

import torch
from torch import nn

from grokkit.errors import require
from grokkit.models.base import HomogeneousNet, check_operand_pairs


class ModularTransformer(HomogeneousNet):
    """Token and learned position embeddings, ``layers`` blocks of multi-head attention and a
    ReLU MLP with residual connections and no LayerNorm (Nanda et al.), then an unembedding.
    Not homogeneous (softmax attention).

    Args:
        p: modulus: tokens 0..p−1 for the operands, p for "=", and p output classes.
        d_model: residual width.
        heads: attention heads.
        d_mlp: MLP hidden width.
        layers: number of blocks.
    """

    degree = None

    def __init__(
        self, p: int, d_model: int = 128, heads: int = 4, d_mlp: int = 512, layers: int = 1
    ) -> None:
        super().__init__()
        require(p >= 2, f"model.net.p must be >= 2, got {p}")
        require(
            d_model % heads == 0, f"model.net.d_model={d_model} must be divisible by heads={heads}"
        )
        self.p = p
        self.embed = nn.Embedding(p + 1, d_model)
        self.position = nn.Parameter(torch.randn(3, d_model) / d_model**0.5)
        self.attention = nn.ModuleList(
            nn.MultiheadAttention(d_model, heads, bias=False, batch_first=True)
            for _ in range(layers)
        )
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model))
            for _ in range(layers)
        )
        self.unembed = nn.Linear(d_model, p, bias=False)

    def check_input(self, x: torch.Tensor) -> None:
        check_operand_pairs(x, self.p)

    def operand_embeddings(self) -> list[torch.Tensor]:
        """The operands' embedding, (p, d_model) with row x for residue x (shared by a and b;
        the "=" token's row left out)."""
        return [self.embed.weight[: self.p]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        equals = torch.full_like(x[:, :1], self.p)
        h = self.embed(torch.cat([x, equals], dim=1)) + self.position
        last = len(self.attention) - 1
        for k, (attention, mlp) in enumerate(zip(self.attention, self.mlp, strict=True)):
            # Only the "=" position is read out, so the last block needs only its query: the
            # same function at a third of the cost.
            query = h[:, -1:] if k == last else h
            h = query + attention(query, h, h, need_weights=False)[0]
            h = h + mlp(h)
        return self.unembed(h[:, -1])
