"""grokkit: a PyTorch Lightning framework for grokking research (Lyu et al., ICLR 2024)."""

__version__ = "0.1.0"
