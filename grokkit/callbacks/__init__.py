"""Callbacks (all act at evaluation points): phase detection, console progress, normalized
margin, NTK alignment, implicit-bias probes, the Fourier probe of modular nets, and snapshots
of the weights."""

from grokkit.callbacks.base import EvaluationCallback
from grokkit.callbacks.fourier import FourierProbe
from grokkit.callbacks.margin import NormalizedMargin
from grokkit.callbacks.ntk import NTKAlignment
from grokkit.callbacks.phases import PhaseDetector
from grokkit.callbacks.probes import ImplicitBiasProbe
from grokkit.callbacks.progress import ConsoleProgress
from grokkit.callbacks.progress_bar import RichStepProgressBar, StepProgressBar
from grokkit.callbacks.snapshots import Snapshots, list_snapshots

__all__ = [
    "ConsoleProgress",
    "EvaluationCallback",
    "FourierProbe",
    "ImplicitBiasProbe",
    "NTKAlignment",
    "NormalizedMargin",
    "PhaseDetector",
    "RichStepProgressBar",
    "Snapshots",
    "StepProgressBar",
    "list_snapshots",
]
