"""Every line grokkit itself prints to the user goes through ``say``, ``warning`` or ``error``."""

import sys


def one_line(message: object) -> str:
    """``message`` (an exception or text) on one line: newlines and runs of spaces collapsed."""
    return " ".join(str(message).split())


def say(message: str, *, who: str = "grokkit", to_stderr: bool = False) -> None:
    """Print ``<who>: <message>`` and flush (logs of background runs show it at once)."""
    print(f"{who}: {message}", file=sys.stderr if to_stderr else sys.stdout, flush=True)


def error(message: object, *, who: str = "grokkit") -> None:
    """The one line a bad input gets: ``grokkit: error: <message>`` on stderr."""
    say(f"error: {one_line(message)}", who=who, to_stderr=True)


def warning(message: object, *, who: str = "grokkit") -> None:
    """A problem grokkit works around (e.g. a run directory a report skips), on one line:
    ``grokkit: warning: <message>`` on stderr."""
    say(f"warning: {one_line(message)}", who=who, to_stderr=True)
