"""The run directory: where a fit's config, metrics, summary, figure and checkpoints live.

This module owns the files' names and formats: config.yaml, metrics.csv and summary.json are
read and written only through it.
"""

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from grokkit.errors import require

CONFIG, METRICS, SUMMARY, CURVES = "config.yaml", "metrics.csv", "summary.json", "curves.png"

# Columns every run writes first, in this order; callback columns follow.
BASE_COLUMNS = ["step", "time", "train/loss", "test/loss", "train/acc", "test/acc", "param_norm"]


def requested_run_dir(requested: str | None, default_name: str) -> Path:
    """``run_dir`` as given, or ``runs/<default_name>``, as an absolute path."""
    return (Path(requested) if requested else Path("runs") / default_name).resolve()


def choose_run_dir(
    requested: str | None, default_name: str, resume_from: str | None, continue_run: bool = False
) -> Path:
    """The directory for this fit, created and claimed.

    Resuming from a checkpoint inside a run directory continues in that directory, and so does
    ``continue_run`` (``--ckpt_path=last``) in the requested one. Otherwise an existing run is
    never overwritten: ``runs/x`` becomes ``runs/x-2``, ``runs/x-3``, ... The claim is atomic
    (creating ``checkpoints/``), so agents sharing ``runs/`` never collide.
    """
    if resume_from is not None and (run_dir := checkpoint_run_dir(resume_from)) is not None:
        return run_dir
    base = requested_run_dir(requested, default_name)
    require(not base.is_file(), f"run_dir: {requested} is a file, expected a directory")
    if continue_run:
        (base / "checkpoints").mkdir(parents=True, exist_ok=True)
        return base
    candidate, n = base, 1
    while True:
        if not (candidate.exists() and any(candidate.iterdir())):
            candidate.mkdir(parents=True, exist_ok=True)
            try:
                (candidate / "checkpoints").mkdir()
                return candidate
            except FileExistsError:
                pass  # another fit claimed it between the check and the claim
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")


def checkpoint_run_dir(ckpt_path: str | Path) -> Path | None:
    """The run directory a checkpoint continues: ``RUN`` for ``RUN/checkpoints/last.ckpt``
    beside ``RUN/config.yaml``; None for any other (a snapshot, a file kept elsewhere), which
    starts a new run directory rather than cut the rows after it from its run's metrics.csv."""
    ckpt = Path(ckpt_path).resolve()
    run_dir = ckpt.parent.parent
    if (
        ckpt.name == "last.ckpt"
        and ckpt.parent.name == "checkpoints"
        and (run_dir / CONFIG).is_file()
    ):
        return run_dir
    return None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2) + "\n")
    os.replace(tmp, path)


def write_config(run_dir: Path, text: str) -> None:
    """config.yaml: the fully resolved config, as the CLI's parser dumps it."""
    (Path(run_dir) / CONFIG).write_text(text)


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run's config.yaml as a dict ({} if it has none)."""
    path = Path(run_dir) / CONFIG
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json, atomically: a reader sees the old file or the new one, never half."""
    write_json_atomic(Path(run_dir) / SUMMARY, summary)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run's summary.json, or {} while the run has none (still going, or killed)."""
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else {}


def _json_safe(value: Any) -> Any:
    """NaN and ±inf (a diverged run's metrics) become strings: JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def read_metrics(path: Path) -> dict[str, list[float]]:
    """metrics.csv as columns of floats (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: [float(r[key]) if r[key] != "" else math.nan for r in rows] for key in rows[0]}


class MetricsCSVLogger(Logger):
    """Writes ``metrics.csv``: one row per evaluation point, flushed as it is written.

    The header is fixed by the first row (base columns first). On resume, rows after the
    checkpoint's step are dropped so the file matches the restored state.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] | None = None
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @property
    def log_dir(self) -> str:
        return str(self.run_dir)

    def _truncate_after(self, step: int) -> None:
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or []) or None
            kept = [r for r in reader if int(float(r["step"])) <= step]
        if self.columns:
            self._rewrite(kept)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.columns is None:
            self.columns = [c for c in BASE_COLUMNS if c in metrics]
            self.columns += [c for c in metrics if c not in self.columns]
            self._rewrite([])
        elif any(c not in self.columns for c in metrics):
            # A column appeared mid-run (rare): rewrite the file with the wider header.
            with open(self.path, newline="") as f:
                old = list(csv.DictReader(f))
            self.columns += [c for c in metrics if c not in self.columns]
            self._rewrite(old)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(metrics)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # config.yaml already holds the full configuration
