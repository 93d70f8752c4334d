"""Networks: plain nn.Modules that declare their homogeneity degree (None if not homogeneous)."""

from grokkit.models.base import HomogeneousNet
from grokkit.models.diagonal import DiagonalNet
from grokkit.models.matrix_factorization import MatrixFactorization
from grokkit.models.mlp import MLP, TwoLayerReLU
from grokkit.models.transformer import ModularTransformer

__all__ = [
    "MLP",
    "DiagonalNet",
    "HomogeneousNet",
    "MatrixFactorization",
    "ModularTransformer",
    "TwoLayerReLU",
]
