"""Each CPU-sized config shows its phenomenon (slow: minutes each; `make test-slow`).

A variant (e3_alpha*, e3_wd*: the keys it changes) runs composed onto its base as its header
says, `grokkit fit --config configs/cpu/e3_modular_grokking.yaml --config configs/cpu/<variant>`.
Every config runs at most once per session; `pytest -m slow -s` prints one line per run with
its wall time and phase steps (the numbers quoted in the README).
"""

import csv
import json
import math
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_configs import config_args

from grokkit.cli import main

CPU = REPO / "configs" / "cpu"
_RUNS: dict[str, tuple[dict, list[dict[str, float]]]] = {}


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cpu_runs")


def fit(name: str, runs_root: Path) -> tuple[dict, list[dict[str, float]]]:
    """Run configs/cpu/<name>.yaml (on its base if a variant) once; return its summary and
    metrics rows."""
    return fit_config(CPU / f"{name}.yaml", runs_root)


def fit_config(config: Path, runs_root: Path) -> tuple[dict, list[dict[str, float]]]:
    name = config.stem
    if name not in _RUNS:
        run_dir = runs_root / name
        start = time.perf_counter()
        assert main(["fit", *config_args(config), f"--run_dir={run_dir}"]) == 0
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
    # What it learned (FourierProbe): at memorization each hidden unit's input weights are as
    # spread over the 48 frequencies as at random init (top-1 share ~0.07); across the
    # transition each unit settles on one frequency (Morwani et al. 2023's max-margin form)
    # and the embedding's energy concentrates on fewer frequencies.
    memorized, end = at_step(rows, s["memorization_step"]), rows[-1]
    assert memorized["fourier/unit_top1_share"] < 0.15 < 0.5 < end["fourier/unit_top1_share"]
    assert end["fourier/top_share"] > 1.3 * memorized["fourier/top_share"]


@pytest.mark.slow
def test_e3_larger_alpha_groks_later_by_about_ln_alpha_over_lambda(runs_root):
    t10 = fit("e3_modular_grokking", runs_root)[0]["grokking_time"]
    t100 = fit("e3_alpha100", runs_root)[0]["grokking_time"]
    assert t10 is not None and t100 is not None
    shift = math.log(100 / 10) / 0.001  # theory: the switch moves by ln(α'/α)/λ
    assert 0.5 * shift < t100 - t10 < 2 * shift


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured on the CPU config (λ = 1e-3, 10x the paper's): with α = 1 memorization "
    "itself is delayed to λt ≈ 6.2, the test accuracy reaches 50% only at λt ≈ 13.5 (α = 10: "
    "7.5) and 82% at the end of 10 000 steps (λt ≈ 18), so it does not grok in the run; the "
    "paper's ordering α = 1 before α = 10 (at λ = 1e-4) does not appear at this size",
)
def test_e3_alpha1_groks_before_alpha10(runs_root):
    t1 = fit("e3_alpha1", runs_root)[0]["grokking_time"]
    t10 = fit("e3_modular_grokking", runs_root)[0]["grokking_time"]
    assert t1 is not None and t1 < t10


@pytest.mark.slow
def test_e3_smaller_weight_decay_groks_later(runs_root):
    t_small = fit("e3_wd5e-4", runs_root)[0]["grokking_time"]  # λ = 5e-4
    t_base = fit("e3_modular_grokking", runs_root)[0]["grokking_time"]  # λ = 1e-3
    assert t_small is not None and t_base is not None
    assert t_small > t_base


@pytest.mark.slow
def test_e3_too_much_weight_decay_collapses_training(runs_root):
    s2, _ = fit("e3_wd2e-3", runs_root)  # memorizes, then the train accuracy collapses
    assert s2["memorization_step"] is not None and s2["train/acc"] < 0.5
    assert s2["grokking_step"] is None
    s3, _ = fit("e3_wd3e-3", runs_root)  # never leaves chance
    assert s3["memorization_step"] is None and s3["train/acc"] < 0.05
    assert s3["grokking_step"] is None


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


@pytest.mark.slow
def test_transformer_groks_through_a_few_fourier_frequencies(runs_root):
    """Nanda et al.'s setting (configs/related/transformer_modular.yaml; ~70 min on 2 cores):
    memorized within a few hundred steps, grokked tens of times later. The Fourier probe shows
    their progress measures: the loss with the logits restricted to the key frequencies falls
    from near chance by over 100× by the middle of the jump in test accuracy, the loss with those
    frequencies excluded rises above chance (ln 113 = 4.73), and the token embedding's energy
    concentrates on the 5 key frequencies."""
    s, rows = fit_config(REPO / "configs" / "related" / "transformer_modular.yaml", runs_root)
    memorized = at_step(rows, s["memorization_step"])
    assert s["memorization_step"] < 2000 and memorized["test/acc"] < 0.5
    assert s["grokking_step"] is not None and s["grokking_step"] > 10 * s["memorization_step"]
    assert s["test/acc"] >= 0.95
    halfway = next(r for r in rows if r["test/acc"] >= 0.5)  # mid-jump
    assert memorized["fourier/restricted_loss"] > 3.0
    assert halfway["fourier/restricted_loss"] < 1e-2 * memorized["fourier/restricted_loss"]
    assert halfway["fourier/excluded_loss"] > math.log(113) > memorized["fourier/excluded_loss"]
    assert rows[-1]["fourier/top_share"] > 0.5 > 0.15 > memorized["fourier/top_share"]
