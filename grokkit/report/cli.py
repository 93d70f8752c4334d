"""``grokkit report PATH``: redraw curves.png and print summaries of run directories."""

import json
import sys
from pathlib import Path

from grokkit.report.curves import plot_run

COLUMNS = ["status", "steps", "memorization_step", "grokking_step", "train/acc", "test/acc"]


def find_runs(path: Path) -> list[Path]:
    """``path`` itself if it is a run directory, else every run directory below it."""
    if (path / "metrics.csv").exists():
        return [path]
    return sorted(p.parent for p in path.rglob("metrics.csv"))


def report_main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: grokkit report PATH   (a run directory, or a folder of run directories)")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    path = Path(argv[0])
    runs = find_runs(path) if path.is_dir() else []
    if not runs:
        print(f"grokkit: error: no run directory (with metrics.csv) at {path}", file=sys.stderr)
        return 2
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for run in runs:
        plot_run(run)
        summary_file = run / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        cells = [str(summary.get(c, "running" if c == "status" else "")) for c in COLUMNS]
        print(f"| {run} | " + " | ".join(cells) + " |")
    return 0
