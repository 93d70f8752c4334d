"""SIGINT/SIGTERM handling for a block of code, restored afterwards (fit, sweep, agent)."""

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call ``handler(signum)`` for SIGINT and SIGTERM inside the block; the previous handlers
    are restored when it ends, however it ends. The handler may itself re-arm a signal (e.g.
    make a second Ctrl-C interrupt at once); the restore undoes that too."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def call(signum: int, frame: Any) -> None:
        handler(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, call)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
