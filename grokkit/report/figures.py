"""The paper's figure panels and the run table of ``grokkit figures``, drawn from run directories.

Each panel is one PNG of one kind (``PLOTS``): ``curves`` (accuracy and loss against flow time t
on a log axis, ‖θ‖ on a twin axis: Figs. 1a, 1b, 2a), ``overlay`` (test accuracy of several runs
against λt: Fig. 2b; ``overlay_train`` adds the train accuracy: Fig. 2c), ``regression`` (train
and test MSE against t: Fig. 3) and ``log_time`` (accuracy and loss against log10(1 + t) on a
log axis, t carried as log10_time: Fig. 4). A run not (yet) in its directory is left out of the
panel; a panel with no run is not drawn.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from grokkit.callbacks.phases import first_crossing  # noqa: E402
from grokkit.report.curves import MARKERS, log10_one_plus_t  # noqa: E402
from grokkit.rundir import METRICS, read_config, read_metrics, read_summary  # noqa: E402

PanelRun = tuple[str, Path]  # (legend label, run directory)
Columns = dict[str, np.ndarray]
DPI = 100
COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _columns(run_dir: Path) -> Columns:
    return {k: np.asarray(v) for k, v in read_metrics(run_dir / METRICS).items()}


def _weight_decay(run_dir: Path) -> float:
    return float((read_config(run_dir).get("model") or {}).get("weight_decay") or 0.0)


def _available(runs: list[PanelRun]) -> list[PanelRun]:
    """The runs that have written at least two rows."""
    return [(label, d) for label, d in runs if (d / METRICS).is_file() and len(_rows(d)) > 1]


def _rows(run_dir: Path) -> list[str]:
    return (run_dir / METRICS).read_text().splitlines()[1:]


def _mark_phases(ax: Any, summary: dict[str, Any], scale: float = 1.0) -> None:
    """Dashed lines at the phase times, dotted at ln α/λ (times multiplied by ``scale``)."""
    for phase, (name, colour) in MARKERS.items():
        at = summary.get(f"{phase}_time")
        if at:
            ax.axvline(at * scale, color=colour, ls="--", lw=1, label=name)
    predicted = summary.get("predicted_transition_time")
    if predicted:
        ax.axvline(predicted * scale, color="k", ls=":", lw=1, label="ln(α)/λ")


def _with_norm(ax: Any, x: np.ndarray, norm: np.ndarray) -> None:
    """‖θ‖ in grey on a twin axis, one legend for both axes."""
    twin = ax.twinx()
    twin.plot(x, norm, color="tab:gray", lw=1, label="‖θ‖")
    twin.set_ylabel("parameter norm ‖θ‖")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize=8, loc="best")


def _split_panels(
    axes: Any, x: np.ndarray, cols: Columns, keep: np.ndarray, metrics: list[tuple[str, str]]
) -> None:
    """One axis per metric: train and test against x, log-x (log-y for losses)."""
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        for split, colour in (("train", "tab:blue"), ("test", "tab:orange")):
            y = cols[f"{split}/{metric}"][keep]
            shown = y > 0 if metric != "acc" else np.ones_like(y, dtype=bool)
            ax.plot(x[shown], y[shown], color=colour, marker=".", ms=2, lw=1, label=f"{split}")
        ax.set_xscale("log")
        if metric != "acc":
            ax.set_yscale("log")
        ax.set_ylabel(label)


def plot_curves(title: str, runs: list[PanelRun], out: Path) -> None:
    """Figs. 1a, 1b, 2a: accuracy and loss against t (log axis), ‖θ‖ on twin axes."""
    _one_run_figure(title, runs, out, [("acc", "accuracy"), ("loss", "loss")])


def plot_regression(title: str, runs: list[PanelRun], out: Path) -> None:
    """Fig. 3: train and test MSE against t (log-log), ‖θ‖ on a twin axis."""
    _one_run_figure(title, runs, out, [("loss", "mean squared error")])


def _one_run_figure(
    title: str, runs: list[PanelRun], out: Path, metrics: list[tuple[str, str]]
) -> None:
    label, run_dir = runs[0]
    cols, summary = _columns(run_dir), read_summary(run_dir)
    keep = cols["time"] > 0
    x = cols["time"][keep]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    _split_panels(axes[0], x, cols, keep, metrics)
    decay = _weight_decay(run_dir)
    for ax in axes[0]:
        _mark_phases(ax, summary)
        ax.set_xlabel(f"gradient-flow time t (λ = {decay:g})")
        _with_norm(ax, x, cols["param_norm"][keep])
    _finish(fig, f"{title}: {label}, {summary.get('status', 'running')}", out)


def plot_log_time(title: str, runs: list[PanelRun], out: Path) -> None:
    """Fig. 4: accuracy and loss against log10(1 + t) on a log axis (t may pass 10^308)."""
    label, run_dir = runs[0]
    cols, summary = _columns(run_dir), read_summary(run_dir)
    x_all = log10_one_plus_t(cols["log10_time"])
    keep = x_all > 0
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    _split_panels(axes[0], x_all[keep], cols, keep, [("acc", "accuracy"), ("loss", "loss")])
    for ax in axes[0]:
        for phase, (name, colour) in MARKERS.items():
            at = summary.get(f"{phase}_log10_time")
            if at is not None:
                ax.axvline(float(log10_one_plus_t(at)), color=colour, ls="--", lw=1, label=name)
        ax.set_xlabel("log10(1 + t), t the gradient-flow time")
        _with_norm(ax, x_all[keep], cols["param_norm"][keep])
    reached = float(log10_one_plus_t(cols["log10_time"][-1]))
    status = summary.get("status", "running")
    _finish(fig, f"{title}: {label}, {status}, reached log10(1 + t) = {reached:.3g}", out)


def plot_overlay(title: str, runs: list[PanelRun], out: Path) -> None:
    """Fig. 2b: test accuracy of every run against λt, ln α marked per run."""
    _overlay(title, runs, out, train=False)


def plot_overlay_train(title: str, runs: list[PanelRun], out: Path) -> None:
    """Fig. 2c: test (solid) and train (dashed) accuracy of every run against λt."""
    _overlay(title, runs, out, train=True)


def _overlay(title: str, runs: list[PanelRun], out: Path, train: bool) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    present = _available(runs)
    for i, (label, run_dir) in enumerate(runs):  # a run keeps its colour while others are missing
        if (label, run_dir) not in present:
            continue
        cols, summary = _columns(run_dir), read_summary(run_dir)
        decay, colour = _weight_decay(run_dir), COLOURS[i % len(COLOURS)]
        x = cols["time"] * decay
        status = summary.get("status", "running")
        if status != "completed":  # a run cut short says so, and where
            label = f"{label} ({status} at λt = {x[-1]:.2g})"
        ax.plot(x, cols["test/acc"], color=colour, lw=1.5, label=f"{label} test")
        if train:
            ax.plot(x, cols["train/acc"], color=colour, lw=1, ls="--", label=f"{label} train")
        predicted = summary.get("predicted_transition_time")
        if predicted:
            ax.axvline(predicted * decay, color=colour, ls=":", lw=1)
    ax.set_xlabel("λt (dotted: ln α, the predicted switch)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="best")
    _finish(fig, title, out)


def _finish(fig: Any, title: str, out: Path) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


PLOTS: dict[str, Callable[[str, list[PanelRun], Path], None]] = {
    "curves": plot_curves,
    "overlay": plot_overlay,
    "overlay_train": plot_overlay_train,
    "regression": plot_regression,
    "log_time": plot_log_time,
}


def draw_panel(kind: str, title: str, runs: list[PanelRun], out: Path) -> Path | None:
    """Draw one panel from the runs that have data; None (nothing written) if none has."""
    present = _available(runs)
    if not present:
        return None
    PLOTS[kind](title, runs if kind.startswith("overlay") else present, out)
    return out


# ------------------------------------------------------------------------------- the table


@dataclass
class TableRun:
    """One row of table.md: the run, the panels it serves and its wall time (None: unknown)."""

    name: str
    run_dir: Path
    panels: list[str]
    seconds: float | None = None


TABLE_HEADER = [
    "panels",
    "run",
    "status",
    "wall time",
    "gradient evaluations",
    "t reached (λt)",
    "memorization t (λt)",
    "grokking t (λt)",
    "misgrokking t (λt)",
    "test acc. halfway t (λt)",
    "ln α/λ (ln α)",
    "final train",
    "final test",
]


def _time(t: Any, decay: float) -> str:
    """``"4 852 (4.85)"``: a flow time and, with weight decay, λt; "—" if not reached."""
    if t is None or (isinstance(t, float) and not math.isfinite(t)):
        return "—"
    return f"{float(t):.4g} ({decay * float(t):.3g})" if decay > 0 else f"{float(t):.4g}"


def _log_time(log10_t: Any) -> str:
    return "—" if log10_t is None else f"10^{float(log10_t):.3g}"


def _final(summary: dict[str, Any], split: str) -> str:
    if f"{split}/acc" in summary:
        return f"{float(summary[f'{split}/acc']):.4f}"
    loss = summary.get(f"{split}/loss")
    return "—" if loss is None else f"MSE {float(loss):.3g}"


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _halfway_test_accuracy(run_dir: Path, clock: str) -> Any:
    """Where test accuracy first rises halfway from its first row's value to 100% (50.5% for
    modular addition from chance, 1%: the level the paper quotes for Fig. 2 is 50%), on the
    run's clock; None if it never does or the run has no accuracy."""
    if not (run_dir / METRICS).is_file():
        return None
    columns = read_metrics(run_dir / METRICS)
    if "test/acc" not in columns or clock not in columns or not columns["test/acc"]:
        return None
    keys = list(columns)
    rows = [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    halfway = (rows[0]["test/acc"] + 1.0) / 2
    crossed = first_crossing(rows, "test/acc", halfway, clock=clock)
    return None if crossed is None else crossed[1]


def table_row(run: TableRun) -> list[str]:
    """The cells of one run's row, from its summary.json and config.yaml."""
    summary = read_summary(run.run_dir)
    decay = _weight_decay(run.run_dir) if run.run_dir.is_dir() else 0.0
    status = summary.get("status") or (
        "running" if (run.run_dir / METRICS).is_file() else "not run"
    )
    log_clock = "log10_time" in summary
    times = [
        _log_time(summary.get(f"{p}_log10_time"))
        if log_clock
        else _time(summary.get(f"{p}_time"), decay)
        for p in ("memorization", "grokking", "misgrokking")
    ]
    reached = (
        _log_time(summary.get("log10_time")) if log_clock else _time(summary.get("time"), decay)
    )
    half = _halfway_test_accuracy(run.run_dir, "log10_time" if log_clock else "time")
    times.append(_log_time(half) if log_clock else _time(half, decay))
    predicted = summary.get("predicted_transition_time")
    evaluations = summary.get("gradient_evaluations")
    return [
        ", ".join(run.panels),
        run.name,
        status,
        _wall(run.seconds),
        "—" if evaluations is None else f"{evaluations}",
        reached,
        *times,
        _time(predicted, decay),
        _final(summary, "train") if summary else "—",
        _final(summary, "test") if summary else "—",
    ]


def write_table(runs: list[TableRun], out: Path, preamble: str = "") -> Path:
    """table.md: one row per run (a run shared by two panels is one row)."""
    lines = [preamble] if preamble else []
    lines += ["| " + " | ".join(TABLE_HEADER) + " |", "|---" * len(TABLE_HEADER) + "|"]
    lines += ["| " + " | ".join(table_row(run)) + " |" for run in runs]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out
