"""Callbacks (all act at evaluation points): phase detection, console progress, normalized
margin, NTK alignment and implicit-bias probes."""

from grokkit.callbacks.base import EvaluationCallback
from grokkit.callbacks.margin import NormalizedMargin
from grokkit.callbacks.ntk import NTKAlignment
from grokkit.callbacks.phases import PhaseDetector
from grokkit.callbacks.probes import ImplicitBiasProbe
from grokkit.callbacks.progress import ConsoleProgress

__all__ = [
    "ConsoleProgress",
    "EvaluationCallback",
    "ImplicitBiasProbe",
    "NTKAlignment",
    "NormalizedMargin",
    "PhaseDetector",
]
