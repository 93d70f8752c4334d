"""A callback whose optional package is not installed (for the one-line error test)."""

from lightning.pytorch.callbacks import Callback


class NeedsAMissingPackage(Callback):
    def __init__(self) -> None:
        import grokkit_test_no_such_package  # noqa: F401
