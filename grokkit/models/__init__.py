"""Homogeneous networks: plain nn.Modules that declare their homogeneity degree."""

from grokkit.models.base import HomogeneousNet
from grokkit.models.diagonal import DiagonalNet

__all__ = ["DiagonalNet", "HomogeneousNet"]
