"""Figures and tables from run directories."""

from grokkit.report.curves import plot_run

__all__ = ["plot_run"]
