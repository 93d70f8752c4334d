"""Reference predictors the theory says a large-init net approaches (PAPER.md §3): the
kernel-regime one early, the rich-regime one late. Each is computed once per data set."""

from grokkit.theory.kernel import kernel_predictor
from grokkit.theory.linear import LinearClassifier, max_margin_classifier
from grokkit.theory.matrix import min_nuclear_norm_completion, zero_fill_completion

__all__ = [
    "LinearClassifier",
    "kernel_predictor",
    "max_margin_classifier",
    "min_nuclear_norm_completion",
    "zero_fill_completion",
]
