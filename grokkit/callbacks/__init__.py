"""Callbacks: phase detection and console progress (all act at evaluation points)."""

from grokkit.callbacks.base import EvaluationCallback
from grokkit.callbacks.phases import PhaseDetector
from grokkit.callbacks.progress import ConsoleProgress

__all__ = ["ConsoleProgress", "EvaluationCallback", "PhaseDetector"]
