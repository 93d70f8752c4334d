"""How a run ends: its status (summary.json, sweep.json) and its exit code, in one table.

A run process killed by a signal (a negative Popen returncode: SIGKILL from the OOM killer, a
signal it does not handle) counts as ``interrupted``, not ``failed``: its last checkpoint is
intact and ``--ckpt_path=last`` continues it, so a sweep's rerun resumes it. Its summary.json,
if any, still says ``running`` (the status a fit keeps current while it trains), which is no end
status: a finished process's status is its summary's only when that is one (``status_of_run``).
"""

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
    """The status an exit code stands for: a process killed by a signal (code < 0) was
    interrupted; any other code not in the table is a failure."""
    if code < 0:
        return "interrupted"
    return STATUS_OF_EXIT.get(code, "failed")


def status_of_run(code: int, summary_status: str | None) -> str:
    """The status of a finished run process (sweep.json, figures.json): its summary.json's,
    unless it has none or one still saying ``running`` (it died before writing its end): then
    its exit code's. A fit that refused its input (bad_input) failed."""
    by_exit = status_of_exit(code)
    if by_exit == "bad_input":
        return "failed"
    return summary_status if summary_status and summary_status != "running" else by_exit


def status_tally(statuses: Iterable[str]) -> str:
    """``"2 completed, 1 failed"``: how many runs ended in each status."""
    counts = Counter(statuses)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
