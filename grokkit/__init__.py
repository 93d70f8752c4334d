"""grokkit: a PyTorch Lightning framework for grokking research (Lyu et al., ICLR 2024).

Everything a script or notebook needs is importable from the top level, e.g.
``from grokkit import GrokTask, DiagonalNet, SparseLinearData, PhaseDetector``: the
LightningModule (``GrokTask``), the gradient-flow integrator (``AdaptiveFlow``), the models
(``grokkit.models``), the data modules (``grokkit.data``) and the callbacks
(``grokkit.callbacks``). Each is imported on first use, so that ``import grokkit`` (and the
``grokkit`` command's start) stays light.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "GrokTask": "grokkit.task",
    "AdaptiveFlow": "grokkit.integrators",
    **dict.fromkeys(
        [
            "DiagonalNet",
            "HomogeneousNet",
            "MLP",
            "MatrixFactorization",
            "ModularTransformer",
            "TwoLayerReLU",
        ],
        "grokkit.models",
    ),
    **dict.fromkeys(
        [
            "DigitsData",
            "FullBatchDataModule",
            "GaussianSeparatedData",
            "MatrixCompletionData",
            "ModularArithmeticData",
            "SparseLinearData",
        ],
        "grokkit.data",
    ),
    **dict.fromkeys(
        [
            "ConsoleProgress",
            "EvaluationCallback",
            "FourierProbe",
            "ImplicitBiasProbe",
            "NTKAlignment",
            "NormalizedMargin",
            "PhaseDetector",
            "Snapshots",
            "list_snapshots",
        ],
        "grokkit.callbacks",
    ),
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if not name.startswith("_"):  # a name added to a subpackage since this list was written
        for package in ("grokkit.models", "grokkit.data", "grokkit.callbacks"):
            module = import_module(package)
            if name in module.__all__:
                return getattr(module, name)
    raise AttributeError(f"module 'grokkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
