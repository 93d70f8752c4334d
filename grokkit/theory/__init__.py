"""Reference predictors the theory says a large-init net approaches (arXiv 2311.18817, §3): the
kernel-regime one early, the rich-regime one late, each computed once per data set; and the
switch time between the two regimes.

The solvers import cvxpy (slow to import), so they are loaded on first use; the switch time
(``grokkit.theory.transition``) is light and used by the task and the report.
"""

from importlib import import_module
from typing import Any

from grokkit.theory.transition import transition_time

_SOLVERS = {
    "kernel_predictor": "grokkit.theory.kernel",
    "LinearClassifier": "grokkit.theory.linear",
    "max_margin_classifier": "grokkit.theory.linear",
    "min_nuclear_norm_completion": "grokkit.theory.matrix",
    "zero_fill_completion": "grokkit.theory.matrix",
}

__all__ = [*_SOLVERS, "transition_time"]


def __getattr__(name: str) -> Any:
    if name in _SOLVERS:
        return getattr(import_module(_SOLVERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
