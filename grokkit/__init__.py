"""grokkit: a PyTorch Lightning framework for grokking research (Lyu et al., ICLR 2024).

``from grokkit import GrokTask`` (the LightningModule) and ``AdaptiveFlow`` (the gradient-flow
integrator) are imported on first use, so that ``import grokkit`` (and the ``grokkit``
command's start) stays light; models, data modules and callbacks live in ``grokkit.models``,
``grokkit.data`` and ``grokkit.callbacks``.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["AdaptiveFlow", "GrokTask", "__version__"]

_LAZY = {"GrokTask": "grokkit.task", "AdaptiveFlow": "grokkit.integrators"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grokkit' has no attribute {name!r}")
