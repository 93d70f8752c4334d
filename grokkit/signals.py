"""SIGINT/SIGTERM handling for a block of code, restored afterwards (fit, sweep, agent)."""

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call ``handler(signum)`` for SIGINT and SIGTERM inside the block; the previous handlers
    are restored when it ends, however it ends. The handler may itself re-arm a signal (e.g.
    make a second Ctrl-C interrupt at once); the restore undoes that too. Off the main thread
    (a run of an ensemble, grokkit.ensemble) nothing is installed: only the main thread gets
    signals, and the ensemble passes stop requests on to its runs itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
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
