"""How a run ends: its status (summary.json, sweep.json) and its exit code, in one table."""

from collections import Counter
from collections.abc import Iterable

# "bad_input" never reaches summary.json: the run did not start (or its directory was never
# claimed); schedulers and sweeps see it only as the exit code.
EXIT_CODES: dict[str, int] = {
    "completed": 0,
    "failed": 1,
    "bad_input": 2,
    "diverged": 3,
    "interrupted": 130,
}
STATUS_OF_EXIT: dict[int, str] = {code: status for status, code in EXIT_CODES.items()}
FINAL = ("completed", "diverged")  # outcomes a rerun of a sweep keeps


def status_of_exit(code: int) -> str:
    """The status an exit code stands for; any code not in the table is a failure."""
    return STATUS_OF_EXIT.get(code, "failed")


def status_tally(statuses: Iterable[str]) -> str:
    """``"2 completed, 1 failed"``: how many runs ended in each status."""
    counts = Counter(statuses)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
