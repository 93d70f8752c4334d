"""What a report reads, checked before anything is drawn: a run directory's metrics.csv,
summary.json and config.yaml, and a sweep's sweep.json. A problem is one line naming the file,
so that ``grokkit report`` can skip that run (or ignore that sweep.json) and report the rest."""

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from grokkit.console import one_line
from grokkit.errors import ConfigError, require
from grokkit.rundir import CONFIG, METRICS, SUMMARY

NEEDED_COLUMNS = ("train/loss", "test/loss", "param_norm")  # and time or log10_time
# What reading a damaged file raises (UnicodeDecodeError and JSONDecodeError are ValueErrors).
READ_ERRORS = (OSError, ValueError, TypeError, KeyError, csv.Error, yaml.YAMLError)


def run_problem(run_dir: Path) -> str | None:
    """Why ``run_dir`` cannot be reported ("<file>: <what is wrong>"), or None if it can."""
    checks = ((METRICS, _check_metrics), (SUMMARY, _check_summary), (CONFIG, _check_config))
    for name, check in checks:
        path = Path(run_dir) / name
        try:
            check(path)
        except ConfigError as exc:
            return f"{path}: {exc}"
        except READ_ERRORS as exc:
            return f"{path}: unreadable ({type(exc).__name__}: {one_line(exc)})"
    return None


def _check_metrics(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    require(text.strip() != "", "empty (no header, no rows)")
    # every row is written whole, newline included: a file without one was cut mid-row
    require(text.endswith("\n"), "its last row is cut short (a half-written file)")
    header, *rows = csv.reader(text.splitlines())
    require(bool(rows), "a header and no rows")
    missing = [c for c in NEEDED_COLUMNS if c not in header]
    if "time" not in header and "log10_time" not in header:
        missing.insert(0, "time")
    require(not missing, f"no {', '.join(missing)} column")
    for line, row in enumerate(rows, start=2):
        require(
            len(row) == len(header),
            f"line {line} has {len(row)} of {len(header)} columns (a half-written file)",
        )
        for cell in row:
            try:
                float(cell or "nan")
            except ValueError:
                raise ConfigError(f"line {line}: {cell!r} is not a number") from None


def _check_summary(path: Path) -> None:
    if path.exists():  # a run still going has none
        summary = json.loads(path.read_text(encoding="utf-8"))
        require(isinstance(summary, dict), f"expected a JSON object, got {type(summary).__name__}")


def _check_config(path: Path) -> None:
    if path.exists():
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        require(config is None or isinstance(config, dict), "expected a YAML mapping")


def read_manifest(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """sweep.json's run records by name ({} without a sweep.json); a file that cannot be read
    or has not the executor's form raises ConfigError naming it."""
    path = Path(sweep_dir) / "sweep.json"
    if not path.exists():
        return {}
    try:
        records = {r["name"]: r for r in json.loads(path.read_text(encoding="utf-8"))["runs"]}
        for record in records.values():
            require(isinstance(record["params"], dict), "a run's params is not a mapping")
            require(isinstance(record["status"], str), "a run's status is not a string")
    except READ_ERRORS as exc:
        raise ConfigError(f"{path}: unreadable ({type(exc).__name__}: {one_line(exc)})") from None
    return records
