"""``grokkit report PATH``: figures and tables for one run directory or a whole sweep."""

from pathlib import Path

from grokkit.console import error
from grokkit.outcome import EXIT_CODES
from grokkit.report.curves import plot_run
from grokkit.report.sweep import report_sweep
from grokkit.rundir import METRICS, read_summary

COLUMNS = ["status", "steps", "memorization_step", "grokking_step", "train/acc", "test/acc"]
USAGE = """usage: grokkit report PATH
  PATH a run directory: redraw its curves.png and print its summary.
  PATH a sweep (grokkit sweep's runs/<name>/) or any folder of run directories: also write
  report.csv / report.md (parameters × phase times × final metrics × status),
  grokking_time_vs_alpha.png, law.png (λ·t_grok against ln α, theory slope 1), heatmap.png
  and law.json (the fitted slope with its standard error)."""


def find_runs(path: Path) -> list[Path]:
    """``path`` itself if it is a run directory, else every run directory below it (set-aside
    attempts of a sweep's restarted runs excluded)."""
    if (path / METRICS).exists():
        return [path]
    return sorted(p.parent for p in path.rglob(METRICS) if ".attempt-" not in p.parent.name)


def report_main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    path = Path(argv[0])
    runs = find_runs(path) if path.is_dir() else []
    if not runs and not (path / "sweep.json").is_file():
        error(f"no run directory (with {METRICS}) at {path}")
        return EXIT_CODES["bad_input"]
    for run in runs:
        plot_run(run)
    if runs == [path]:
        summary = read_summary(path)
        cells = [str(summary.get(c, "running" if c == "status" else "")) for c in COLUMNS]
        print("| run | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 1) + "|")
        print(f"| {path} | " + " | ".join(cells) + " |")
    else:
        print(report_sweep(path, runs))
    return 0
