"""curves.png: the paper-style figure of one run."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from grokkit.rundir import read_metrics  # noqa: E402

MARKERS = {  # summary key -> (label, colour)
    "memorization_step": ("memorization", "tab:green"),
    "grokking_step": ("grokking", "tab:red"),
}


def step_at_time(steps: np.ndarray, times: np.ndarray, t: float) -> float | None:
    """The (interpolated) step at which gradient-flow time reaches t; None beyond the run."""
    if len(times) == 0 or t > times[-1]:
        return None
    return float(np.interp(t, times, steps))


def plot_run(run_dir: Path) -> Path:
    """Accuracy (or loss) and loss against step on a log axis, ‖θ‖ on a twin axis, with
    vertical markers at memorization, grokking and the predicted transition ln(α)/λ."""
    run_dir = Path(run_dir)
    cols = {k: np.asarray(v) for k, v in read_metrics(run_dir / "metrics.csv").items()}
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    keep = cols["step"] >= 1  # a log axis cannot show step 0
    step = cols["step"][keep]
    panels = [("acc", "accuracy")] if "train/acc" in cols else []
    panels.append(("loss", "loss"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    predicted = summary.get("predicted_transition_time")
    predicted_step = (
        step_at_time(cols["step"], cols["time"], predicted) if predicted is not None else None
    )
    for ax, (metric, label) in zip(axes[0], panels, strict=True):
        for split, colour in (("train", "tab:blue"), ("test", "tab:orange")):
            ax.plot(step, cols[f"{split}/{metric}"][keep], color=colour, label=f"{split} {label}")
        ax.set_xscale("log")
        if metric == "loss":
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        for key, (name, colour) in MARKERS.items():
            if summary.get(key):
                ax.axvline(summary[key], color=colour, ls="--", lw=1, label=name)
        if predicted_step:
            ax.axvline(predicted_step, color="k", ls=":", lw=1, label="ln(α)/λ")
        twin = ax.twinx()
        twin.plot(step, cols["param_norm"][keep], color="tab:gray", lw=1, label="‖θ‖")
        twin.set_ylabel("parameter norm ‖θ‖")
        lines = ax.get_legend_handles_labels()
        twin_lines = twin.get_legend_handles_labels()
        ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize=8, loc="best")
    title = f"{run_dir.name}: {summary.get('status', 'running')}"
    if predicted is not None and predicted_step is None and math.isfinite(predicted):
        title += f" (ln(α)/λ = {predicted:.4g} is past the run's t = {cols['time'][-1]:.4g})"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
