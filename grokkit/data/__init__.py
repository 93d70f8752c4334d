"""Full-batch data modules: each builds its tensors once, deterministically in its own seed."""

from grokkit.data.digits import DigitsData
from grokkit.data.full_batch import FullBatchDataModule
from grokkit.data.gaussian_separated import GaussianSeparatedData
from grokkit.data.matrix_completion import MatrixCompletionData
from grokkit.data.modular import ModularArithmeticData
from grokkit.data.sparse_linear import SparseLinearData

__all__ = [
    "DigitsData",
    "FullBatchDataModule",
    "GaussianSeparatedData",
    "MatrixCompletionData",
    "ModularArithmeticData",
    "SparseLinearData",
]
