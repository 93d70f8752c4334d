"""curves.png: the paper-style figure of one run."""

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from grokkit.rundir import METRICS, read_config, read_metrics, read_summary  # noqa: E402

MARKERS = {  # phase -> (label, colour)
    "memorization": ("memorization", "tab:green"),
    "grokking": ("grokking", "tab:red"),
    "misgrokking": ("misgrokking", "tab:purple"),
}


# Callback columns drawn in the second row, one panel per prefix.
EXTRA_PANELS = {
    "margin/": "normalized margin",
    "ntk/": "NTK alignment",
    "probe/": "implicit-bias probes",
    "fourier/": "Fourier probe: key frequencies",
}
REFERENCE_COLOURS = ["tab:green", "tab:brown", "tab:pink", "tab:olive"]
# Reference margins drawn on the margin panel (from summary.json's references).
# (For the depth-L diagonal net Σ|w_j|^(2/L) ≤ ‖θ‖², so the max-ℓ_{2/L} margin (L1 at L = 2)
# bounds the normalized margin; the max-L2 margin is in another normalization, not drawn.)
MARGIN_REFERENCES = {
    "max_l1_margin": "max-L1 margin (late-phase limit)",
    "max_lq_margin": "max-ℓ_{2/L} margin, a KKT point (late-phase limit)",
}


def _plot_group(
    ax: Any,
    group: str,
    cols: dict[str, np.ndarray],
    keep: np.ndarray,
    x: np.ndarray,
    references: dict[str, dict[str, float]],
) -> None:
    """One callback panel: its columns (cells left empty between cadence points skipped)."""
    losses = None  # the Fourier probe's losses share one twin axis
    for column in [c for c in cols if c.startswith(group) and c != "margin/min"]:
        values = cols[column][keep]
        finite = np.isfinite(values)
        if column.startswith("fourier/key_"):  # frequencies, not a share: listed in metrics.csv
            continue
        if column.endswith("_loss") and group == "fourier/":
            if losses is None:
                losses = ax.twinx()
                losses.set_yscale("log")
                losses.set_ylabel("train loss, logits restricted / excluded")
            style = "--" if "excluded" in column else ":"
            losses.plot(x[finite], values[finite], ls=style, color="tab:gray", lw=1, label=column)
            losses.legend(fontsize=8, loc="center left")
            continue
        if column == "ntk/velocity":  # a rate, on its own log axis
            twin = ax.twinx()
            twin.plot(x[finite], values[finite], color="tab:gray", lw=1, label=column)
            if (values[finite] > 0).any():  # (a kernel that never moves: velocity 0, linear)
                twin.set_yscale("log")
            twin.set_ylabel("kernel velocity (per unit time)")
            twin.legend(fontsize=8, loc="lower left")
            continue
        ax.plot(x[finite], values[finite], marker=".", ms=3, lw=1, label=column)
    if group == "margin/":
        for i, (name, label) in enumerate(MARGIN_REFERENCES.items()):
            if "margin" in references.get(name, {}):
                ax.axhline(
                    references[name]["margin"],
                    color=REFERENCE_COLOURS[i],
                    ls="-.",
                    lw=1,
                    label=label,
                )
        ax.set_ylabel("min_i q_i / ‖θ‖^L")
    elif group == "fourier/":
        ax.set_ylabel("energy share (top-k) / Gini")
    elif group == "probe/" and any(c.startswith("probe/dist") for c in cols):
        ax.set_yscale("log")
        ax.set_ylabel("‖W − W_ref‖_F / ‖W_ref‖_F")
    else:
        ax.set_ylabel(EXTRA_PANELS[group])
    ax.set_title(EXTRA_PANELS[group], fontsize=9)


def log10_one_plus_t(log10_t: np.ndarray | float) -> np.ndarray:
    """log10(1 + t) from log10 t, for any t (also past 10^308): the paper's Fig. 4 axis."""
    return np.logaddexp(0.0, np.asarray(log10_t, dtype=float) * math.log(10)) / math.log(10)


def plot_run(run_dir: Path) -> Path:
    """Accuracy (classification) and loss against gradient-flow time t on a log axis (against
    log10(1 + t) when t is carried as log10_time, loss-normalized runs), ‖θ‖ on a twin axis, with
    vertical markers at memorization, grokking, misgrokking and the predicted transition."""
    run_dir = Path(run_dir)
    cols = {k: np.asarray(v) for k, v in read_metrics(run_dir / METRICS).items()}
    summary = read_summary(run_dir)
    # every run against gradient-flow time t: runs of any step size (or integrator) compare
    log_clock = "log10_time" in cols  # loss-normalized runs: t spans hundreds of decades
    x_all = log10_one_plus_t(cols["log10_time"]) if log_clock else cols["time"]
    keep = x_all > 0  # a log axis cannot show t = 0
    log_x = bool(keep.any())  # else only the initialization's row: drawn on a linear axis
    keep = keep if log_x else np.ones_like(keep)
    x = x_all[keep]
    panels = [("acc", "accuracy")] if "train/acc" in cols else []
    panels.append(("loss", "loss"))
    extra = [group for group in EXTRA_PANELS if any(c.startswith(group) for c in cols)]
    n_cols = max(len(panels), len(extra))
    fig, axes = plt.subplots(
        1 + bool(extra), n_cols, figsize=(6.5 * n_cols, 4.2 * (1 + bool(extra))), squeeze=False
    )
    weight_decay = (read_config(run_dir).get("model") or {}).get("weight_decay")
    x_label = "t (gradient-flow time)"
    if log_clock:
        x_label = "log10(1 + t), t the gradient-flow time"
    elif weight_decay:
        x_label += f"; λt = t × {weight_decay:g}"
    predicted = summary.get("predicted_transition_time")
    within = predicted is not None and not log_clock and len(x) and predicted <= x[-1]
    predicted_x = predicted if within else None
    references = summary.get("references") or {}

    def mark_phases(ax: Any) -> None:
        for phase, (name, colour) in MARKERS.items():
            if log_clock:
                at = summary.get(f"{phase}_log10_time")
                at = None if at is None else float(log10_one_plus_t(at))
            else:
                at = summary.get(f"{phase}_time")
            if at:
                ax.axvline(at, color=colour, ls="--", lw=1, label=name)
        if predicted_x:
            ax.axvline(predicted_x, color="k", ls=":", lw=1, label="ln(α)/λ")

    for ax, (metric, label) in zip(axes[0], panels, strict=False):
        for split, colour in (("train", "tab:blue"), ("test", "tab:orange")):
            ax.plot(x, cols[f"{split}/{metric}"][keep], color=colour, label=f"{split} {label}")
        for i, (name, values) in enumerate(references.items()):
            if f"test/{metric}" in values:  # a reference predictor's test metric
                ax.axhline(
                    values[f"test/{metric}"],
                    color=REFERENCE_COLOURS[i % 4],
                    ls="-.",
                    lw=1,
                    label=f"{name} (test)",
                )
        ax.set_xscale("log" if log_x else "linear")
        if metric == "loss":
            ax.set_yscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(label)
        mark_phases(ax)
        twin = ax.twinx()
        twin.plot(x, cols["param_norm"][keep], color="tab:gray", lw=1, label="‖θ‖")
        twin.set_ylabel("parameter norm ‖θ‖")
        lines = ax.get_legend_handles_labels()
        twin_lines = twin.get_legend_handles_labels()
        ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize=8, loc="best")
    for ax, group in zip(axes[1] if extra else [], extra, strict=False):
        _plot_group(ax, group, cols, keep, x, references)
        ax.set_xscale("log" if log_x else "linear")
        ax.set_xlabel(x_label)
        mark_phases(ax)
        ax.legend(fontsize=8, loc="best")
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    title = f"{run_dir.name}: {summary.get('status', 'running')}"
    if predicted is not None and predicted_x is None and math.isfinite(predicted):
        title += f" (ln(α)/λ = {predicted:.4g} is past the run's t = {cols['time'][-1]:.4g})"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
