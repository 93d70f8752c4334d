"""Full-batch data modules: each builds its tensors once, deterministically in its own seed."""

from grokkit.data.full_batch import FullBatchDataModule
from grokkit.data.sparse_linear import SparseLinearData

__all__ = ["FullBatchDataModule", "SparseLinearData"]
