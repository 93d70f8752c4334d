"""Each CPU-sized config shows its phenomenon (slow: minutes each; `make test-slow`).

Every config runs at most once per session; `pytest -m slow -s` prints one line per run with
its wall time and phase steps (the numbers quoted in the README).
"""

import csv
import json
import time
from pathlib import Path

import pytest
from conftest import REPO

from grokkit.cli import main

CPU = REPO / "configs" / "cpu"
_RUNS: dict[str, tuple[dict, list[dict[str, float]]]] = {}


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cpu_runs")


def fit(name: str, runs_root: Path) -> tuple[dict, list[dict[str, float]]]:
    """Run configs/cpu/<name>.yaml once; return its summary and metrics rows."""
    return fit_config(CPU / f"{name}.yaml", runs_root)


def fit_config(config: Path, runs_root: Path) -> tuple[dict, list[dict[str, float]]]:
    name = config.stem
    if name not in _RUNS:
        run_dir = runs_root / name
        start = time.perf_counter()
        assert main(["fit", "--config", str(config), f"--run_dir={run_dir}"]) == 0
        wall = time.perf_counter() - start
        summary = json.loads((run_dir / "summary.json").read_text())
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
        keys = ("memorization_step", "grokking_step", "misgrokking_step", "grokking_time")
        print(
            f"\n[cpu-config] {name}: wall {wall:.0f} s, steps {summary['steps']}, "
            + ", ".join(f"{k} {summary[k]}" for k in keys)
            + f", final train/test {summary.get('train/acc', summary['train/loss']):.4g}"
            f"/{summary.get('test/acc', summary['test/loss']):.4g}"
        )
        _RUNS[name] = summary, rows
    return _RUNS[name]


def at_step(rows: list[dict[str, float]], step: float) -> dict[str, float]:
    return next(r for r in rows if r["step"] >= step)


@pytest.mark.slow
def test_e2_misgrokking(runs_root):
    s, rows = fit("e2_misgrokking", runs_root)
    assert s["grokking_step"] is not None and s["grokking_step"] <= 5  # generalizes at once
    assert s["misgrokking_step"] is not None  # ... then the test accuracy collapses
    assert s["train/acc"] == 1.0 and s["test/acc"] < 0.6


@pytest.mark.slow
def test_e5_matrix_completion_plateau_then_drop(runs_root):
    s, rows = fit("e5_matrix_completion", runs_root)
    assert s["memorization_step"] is not None and s["memorization_step"] <= 100
    plateau = at_step(rows, s["memorization_step"])["test/loss"]
    later = at_step(rows, 100 * s["memorization_step"])["test/loss"]
    assert later > 0.9 * plateau  # still on the kernel plateau 100x later
    assert s["grokking_step"] is not None  # then down by >= 100x (the detector's ratio)
    assert s["test/loss"] <= 0.01 * plateau


@pytest.mark.slow
def test_e3_modular_grokking(runs_root):
    s, rows = fit("e3_modular_grokking", runs_root)
    assert s["memorization_step"] is not None
    assert at_step(rows, s["memorization_step"])["test/acc"] < 0.05  # memorized, not generalized
    assert s["grokking_step"] is not None and s["grokking_step"] > 2 * s["memorization_step"]
    assert s["test/acc"] >= 0.95


@pytest.mark.slow
def test_e3_alpha_trend_delays_grokking(runs_root):
    times = {
        a: fit(f"e3_alpha{a}" if a != 10 else "e3_modular_grokking", runs_root)[0]["grokking_time"]
        for a in (1, 10, 100)
    }
    assert None not in times.values(), times
    assert times[1] < times[10] < times[100], times


@pytest.mark.slow
def test_e3_weight_decay_trend(runs_root):
    base = fit("e3_modular_grokking", runs_root)[0]
    mid = [fit(f"e3_wd{w}", runs_root)[0] for w in ("3e-3", "1e-2")]
    times = [base["grokking_time"]] + [m["grokking_time"] for m in mid]
    assert None not in times and times == sorted(times, reverse=True), times  # earlier with λ
    largest = fit("e3_wd3e-2", runs_root)[0]
    assert largest["grokking_step"] is None  # too much decay: no generalization


@pytest.mark.slow
def test_e4_no_decay_transition_is_slow(runs_root):
    """Without weight decay nothing happens to the test accuracy for orders of magnitude of t
    after memorization, and then it rises only slowly (Fig. 4); the CPU run shows the start."""
    s, rows = fit("e4_no_decay", runs_root)
    assert s["memorization_step"] is not None and s["grokking_step"] is None
    t_mem = s["memorization_time"]
    assert max(r["test/acc"] for r in rows if r["time"] <= 100 * t_mem) < 0.02
    rising = [r["time"] for r in rows if r["test/acc"] >= 0.02]
    assert rising and rising[0] >= 1000 * t_mem  # the rise starts only at t >= 10^3 t_mem
    assert s["test/acc"] > 0.05


@pytest.mark.slow
def test_omnigrok_digits_generalizes_long_after_memorizing(runs_root):
    s, rows = fit_config(REPO / "configs" / "related" / "omnigrok_digits.yaml", runs_root)
    assert s["memorization_step"] is not None
    assert at_step(rows, s["memorization_step"])["test/acc"] < 0.8  # memorized first ...
    assert s["grokking_step"] is not None and s["grokking_step"] >= 5 * s["memorization_step"]
    assert s["test/acc"] >= 0.95  # ... generalized much later
