"""Sweeps: W&B sweep files, the serverless local executor and the W&B agent launcher."""

from grokkit.sweep.spec import SweepRun, SweepSpec, expand, load_sweep

__all__ = ["SweepRun", "SweepSpec", "expand", "load_sweep"]
