"""A sweep's table, figures and the grokking-time law.

Works on any folder of run directories (``grokkit sweep``'s, or runs a W&B agent wrote): α, λ and
the seed are read from each run's config.yaml, phase times and final metrics from summary.json,
and the swept parameters and statuses of runs that never started from sweep.json when present.
"""

import csv
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from grokkit.outcome import status_tally  # noqa: E402
from grokkit.report.check import read_manifest  # noqa: E402
from grokkit.rundir import read_config, read_metrics, read_summary  # noqa: E402
from grokkit.theory.transition import transition_time  # noqa: E402

PHASE_COLUMNS = [
    "status",
    "steps",
    "memorization_step",
    "memorization_time",
    "grokking_step",
    "grokking_time",
    "misgrokking_step",
    "predicted_transition_time",
]
FINAL_COLUMNS = ["train/acc", "test/acc", "train/loss", "test/loss"]
# Read from config.yaml for every run; left out of the table when the sweep swept them.
SAME_AS_PARAMETER = {
    "alpha": "model.alpha",
    "weight_decay": "model.weight_decay",
    "seed": "seed_everything",
}


@dataclass
class LawFit:
    """Least-squares fit of λ·t_grok = slope · ln α + intercept over the grokked runs."""

    slope: float
    slope_se: float
    intercept: float
    intercept_se: float
    n: int

    def line(self) -> str:
        return (
            f"λ·t_grok = {self.slope:.3f} (± {self.slope_se:.3f}) · ln α "
            f"{'+' if self.intercept >= 0 else '−'} {abs(self.intercept):.3f} "
            f"(± {self.intercept_se:.3f}), {self.n} grokked runs; theory: slope 1"
        )


def collect(
    sweep_dir: Path,
    run_dirs: list[Path],
    records: dict[str, dict[str, Any]] | None = None,
    skipped: Collection[Path] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per run (alpha, weight_decay, seed, swept parameters, phases, final metrics) and
    the names of the swept parameters. ``records``: sweep.json's (None: read it here);
    ``skipped``: run directories left out of the report (unreadable), also as records."""
    records = read_manifest(sweep_dir) if records is None else records
    left_out = {_name(sweep_dir, run_dir) for run_dir in skipped}
    swept = list(next(iter(records.values()))["params"]) if records else []
    rows = []
    seen = set()
    for run_dir in run_dirs:
        name = _name(sweep_dir, run_dir)
        seen.add(name)
        rows.append(_row(name, run_dir, records.get(name)))
    for name, record in records.items():  # runs that never got a directory (e.g. bad input)
        if name not in seen | left_out:
            rows.append({"run": name, **record["params"], "status": record["status"]})
    return rows, swept


def _name(sweep_dir: Path, run_dir: Path) -> str:
    return str(run_dir.relative_to(sweep_dir)) if run_dir != sweep_dir else run_dir.name


def _row(name: str, run_dir: Path, record: dict[str, Any] | None) -> dict[str, Any]:
    config = read_config(run_dir)
    model = config.get("model") or {}
    summary = read_summary(run_dir)
    row: dict[str, Any] = {
        "run": name,
        **(record["params"] if record else {}),
        "alpha": model.get("alpha"),
        "weight_decay": model.get("weight_decay"),
        "seed": config.get("seed_everything"),
    }
    row.update({c: summary.get(c) for c in PHASE_COLUMNS})
    row["status"] = summary.get("status") or (record or {}).get("status") or "running"
    row.update({c: summary[c] for c in FINAL_COLUMNS if c in summary})
    return row


def write_tables(rows: list[dict[str, Any]], out: Path) -> str:
    """report.csv and report.md in ``out``; returns the Markdown."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    columns = [c for c in columns if SAME_AS_PARAMETER.get(c) not in columns]
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: _cell(row.get(c)) for c in columns} for row in rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    (out / "report.md").write_text(markdown)
    return markdown


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _law_points(rows: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """(α, λ, t_grok) of every run that grokked, with α > 1 and λ > 0 (where ln α / λ is the
    theory's transition time)."""
    points = []
    for row in rows:
        alpha, wd, t = row.get("alpha"), row.get("weight_decay"), row.get("grokking_time")
        numbers = isinstance(alpha, int | float) and isinstance(wd, int | float)
        if t is not None and numbers and alpha > 1 and wd > 0:
            points.append((float(alpha), float(wd), float(t)))
    return points


def fit_law(rows: list[dict[str, Any]]) -> LawFit | None:
    """Ordinary least squares of λ·t_grok on ln α with standard errors; None with fewer than
    three grokked runs or a single α."""
    points = _law_points(rows)
    x = np.array([math.log(a) for a, _, _ in points])
    y = np.array([wd * t for _, wd, t in points])
    if len(points) < 3 or np.ptp(x) == 0:
        return None
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    sigma2 = float(residual @ residual) / (len(x) - 2)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    return LawFit(
        float(coef[0]), math.sqrt(cov[0, 0]), float(coef[1]), math.sqrt(cov[1, 1]), len(x)
    )


def _theory_applies(rows: list[dict[str, Any]], weight_decay: float) -> bool:
    """Whether the runs at this λ have a predicted switch time: the theory speaks for their net,
    initialization and optimizer (each run's summary says, ``predicted_transition_time``)."""
    return any(
        r.get("predicted_transition_time") is not None
        for r in rows
        if r.get("weight_decay") == weight_decay
    )


def plot_sweep(rows: list[dict[str, Any]], out: Path, law: LawFit | None) -> list[Path]:
    """grokking_time_vs_alpha.png, law.png and heatmap.png; returns the files written."""
    decays = sorted(
        {r["weight_decay"] for r in rows if isinstance(r.get("weight_decay"), float | int)}
    )
    colours = {
        wd: plt.get_cmap("viridis")(i / max(1, len(decays) - 1)) for i, wd in enumerate(decays)
    }
    points = _law_points(rows)
    written = []

    fig, ax = plt.subplots(figsize=(6, 4.5))
    alphas = sorted({a for a, _, _ in points})
    for wd in decays:
        mine = [(a, t) for a, w, t in points if w == wd]
        if mine:  # every run as a dot, the mean over seeds as the line
            ax.scatter(*zip(*mine, strict=True), color=colours[wd], s=12)
            means = [
                (a, np.mean([t for b, t in mine if b == a])) for a in sorted({a for a, _ in mine})
            ]
            ax.plot(*zip(*means, strict=True), "-", color=colours[wd], label=f"λ = {wd:g}")
        if alphas and _theory_applies(rows, wd):
            grid = np.geomspace(min(alphas), max(alphas), 50)
            theory = [transition_time(a, wd) or np.nan for a in grid]
            ax.plot(grid, theory, "--", color=colours[wd], lw=1)
    if alphas:
        ax.set_xscale("log")
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(
        yscale="log",
        xlabel="initial scale α",
        ylabel="grokking time t_grok",
        title="grokking time against α (dashed: theory ln α / λ)",
    )
    if points:
        ax.legend(fontsize=8)
    written.append(_save(fig, out / "grokking_time_vs_alpha.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for wd in decays:
        mine = [(math.log(a), w * t) for a, w, t in points if w == wd]
        if mine:
            ax.scatter(*zip(*mine, strict=True), color=colours[wd], label=f"λ = {wd:g}", zorder=3)
    if points and any(_theory_applies(rows, wd) for wd in decays):
        xs = np.linspace(0, max(math.log(a) for a, _, _ in points) * 1.05, 2)
        ax.plot(xs, xs, "k--", lw=1, label="theory: λ·t = ln α (slope 1)")
        if law is not None:
            ax.plot(
                xs,
                law.slope * xs + law.intercept,
                "r-",
                lw=1,
                label=f"fit: slope {law.slope:.2f} ± {law.slope_se:.2f}",
            )
        ax.legend(fontsize=8)
    ax.set(xlabel="ln α", ylabel="λ · t_grok", title="grokking-time law")
    written.append(_save(fig, out / "law.png"))

    written.append(_plot_heatmaps(rows, out / "heatmap.png"))
    return written


def _plot_heatmaps(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grokking time and the final test metric over (α, λ), averaged over seeds."""
    numeric = [
        r
        for r in rows
        if isinstance(r.get("alpha"), int | float)
        and isinstance(r.get("weight_decay"), int | float)
    ]
    alphas = sorted({r["alpha"] for r in numeric})
    decays = sorted({r["weight_decay"] for r in numeric})
    final = "test/acc" if any("test/acc" in r for r in numeric) else "test/loss"
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.6 * len(decays) + 3))
    for ax, key, title in (
        (axes[0], "grokking_time", "grokking time (blank: not grokked)"),
        (axes[1], final, f"final {final}"),
    ):
        grid = np.full((len(decays), len(alphas)), np.nan)
        for i, wd in enumerate(decays):
            for j, a in enumerate(alphas):
                values = [
                    r[key]
                    for r in numeric
                    if r["alpha"] == a
                    and r["weight_decay"] == wd
                    and isinstance(r.get(key), int | float)
                ]
                if values:
                    grid[i, j] = float(np.mean(values))
        limits = {"vmin": 0.0, "vmax": 1.0} if key.endswith("/acc") else {}
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", **limits)
        fig.colorbar(image, ax=ax)
        for (i, j), value in np.ndenumerate(grid):
            if math.isfinite(value):
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_yticks(range(len(decays)), [f"{d:g}" for d in decays])
        ax.set(xlabel="α", ylabel="λ", title=title)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def colour_parameter(rows: list[dict[str, Any]], swept: list[str]) -> str:
    """The parameter the overlay colours by: the first swept one (not the seed) that takes
    several values, else α."""
    for name in swept:
        if "seed" not in name and len({_cell(r.get(name)) for r in rows}) > 1:
            return name
    return "alpha"


def plot_overlay(rows: list[dict[str, Any]], sweep_dir: Path, swept: list[str], path: Path) -> Path:
    """Every run's test accuracy (or test loss) against λt (t where some λ is 0), coloured by
    the swept parameter (seeds share a colour), t_grok marked with a dot: the paper's Fig. 2b/2c
    for any sweep."""
    key = colour_parameter(rows, swept)
    values = sorted({r.get(key) for r in rows if r.get(key) is not None}, key=_sort_key)
    colours = {
        v: plt.get_cmap("viridis")(i / max(1, len(values) - 1)) for i, v in enumerate(values)
    }
    by_decay = all(isinstance(r.get("weight_decay"), int | float) and r["weight_decay"] > 0
                   for r in rows if r.get(key) is not None)  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labelled: set[Any] = set()
    metric = "test/loss"
    for row in rows:
        metrics_file = sweep_dir / row["run"] / "metrics.csv"
        if row.get(key) is None or not metrics_file.is_file():
            continue
        cols = read_metrics(metrics_file)
        metric = "test/acc" if "test/acc" in cols else "test/loss"
        if not cols.get(metric):
            continue
        scale = float(row["weight_decay"]) if by_decay else 1.0
        x, y = np.asarray(cols["time"]) * scale, np.asarray(cols[metric])
        value = row[key]
        label = None if value in labelled else f"{key} = {_cell(value)}"
        labelled.add(value)
        ax.plot(x, y, color=colours[value], lw=1.2, label=label)
        if row.get("grokking_time") is not None:
            x_grok = float(row["grokking_time"]) * scale
            ax.plot(x_grok, np.interp(x_grok, x, y), "o", color=colours[value], ms=4)
    ax.set_xlabel("λt" if by_decay else "t (gradient-flow time)")
    if not by_decay:
        ax.set_xscale("symlog", linthresh=1e-2)
    if metric == "test/loss":
        ax.set_yscale("log")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of every run, coloured by {key} (dots: t_grok)", fontsize=10)
    if labelled:
        ax.legend(fontsize=8)
    return _save(fig, path)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def report_sweep(
    sweep_dir: Path,
    run_dirs: list[Path],
    records: dict[str, dict[str, Any]] | None = None,
    skipped: Collection[Path] = (),
) -> str:
    """Tables, figures and law.json for a sweep (arguments as ``collect``'s); returns the text
    printed to the user."""
    rows, swept = collect(sweep_dir, run_dirs, records, skipped)
    markdown = write_tables(rows, sweep_dir)
    law = fit_law(rows)
    figures = plot_sweep(rows, sweep_dir, law)
    figures.append(plot_overlay(rows, sweep_dir, swept, sweep_dir / "overlay.png"))
    (sweep_dir / "law.json").write_text(json.dumps(vars(law) if law else None, indent=2) + "\n")
    tally = status_tally(row["status"] for row in rows)
    law_line = law.line() if law else "grokking-time law: fewer than 3 grokked runs with α > 1"
    files = [sweep_dir / "report.csv", sweep_dir / "report.md", *figures]
    return (
        f"{markdown}\n{len(rows)} runs: {tally}\n{law_line}\n"
        f"written: {', '.join(str(p) for p in files)}"
    )
