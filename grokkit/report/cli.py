"""``grokkit report PATH``: figures and tables for one run directory or a whole sweep."""

from pathlib import Path
from typing import Any

from grokkit.console import error, one_line, warning
from grokkit.errors import ConfigError
from grokkit.outcome import EXIT_CODES
from grokkit.report.check import read_manifest, run_problem
from grokkit.report.curves import plot_run
from grokkit.report.sweep import report_sweep
from grokkit.rundir import CURVES, METRICS, read_summary

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
        if argv[:1] in (["-h"], ["--help"]):
            return EXIT_CODES["completed"]
        error(f"report: expected one PATH (a run directory or a sweep), got {len(argv)} arguments")
        return EXIT_CODES["bad_input"]
    path = Path(argv[0])
    runs = find_runs(path) if path.is_dir() else []
    if not runs and not (path / "sweep.json").is_file():
        error(f"no run directory (with {METRICS}) at {path}")
        return EXIT_CODES["bad_input"]
    problems = {run: problem for run in runs if (problem := run_problem(run)) is not None}
    if runs == [path]:
        return _report_run(path, problems.get(path))
    return _report_sweep(path, [run for run in runs if run not in problems], problems)


def _report_run(path: Path, problem: str | None) -> int:
    """One run directory: curves.png redrawn and its summary as a table row."""
    if problem is not None:
        error(problem)
        return EXIT_CODES["bad_input"]
    plot_run(path)
    summary = read_summary(path)
    cells = [str(summary.get(c, "running" if c == "status" else "")) for c in COLUMNS]
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    print(f"| {path} | " + " | ".join(cells) + " |")
    return EXIT_CODES["completed"]


def _report_sweep(path: Path, runs: list[Path], problems: dict[Path, str]) -> int:
    """A sweep (or any folder of runs): every readable run directory reported, each unreadable
    one skipped with a warning line, a damaged sweep.json ignored with one."""
    for problem in problems.values():
        warning(f"skipped run directory: {problem}")
    try:
        records: dict[str, Any] = read_manifest(path)
    except ConfigError as exc:
        if not runs:
            error(exc)
            return EXIT_CODES["bad_input"]
        warning(f"{exc}; reporting the run directories alone")
        records = {}
    skipped = {str(run.relative_to(path)) for run in problems}
    if not runs and not set(records) - skipped:
        error(f"no readable run directory at {path} ({len(problems)} skipped)")
        return EXIT_CODES["bad_input"]
    for run in runs:
        try:  # a figure that cannot be drawn costs that figure, not the sweep's report
            plot_run(run)
        except Exception as exc:  # noqa: BLE001
            warning(f"{run / CURVES} not drawn ({type(exc).__name__}: {one_line(exc)})")
    print(report_sweep(path, runs, records, skipped=problems))
    return EXIT_CODES["completed"]
