"""grokkit.report: the sweep report on a real sweep (table, figures, the λ·t_grok law) and the law
fit on known numbers."""

import json
import math

import pytest
from conftest import grokkit

from grokkit.report.sweep import _theory_applies, collect, colour_parameter, fit_law


def test_report_on_a_real_sweep_writes_table_figures_and_the_law(finished_sweep):
    out, _ = finished_sweep
    result = grokkit("report", str(out), cwd=out)
    assert result.returncode == 0, result.stderr
    figures = ("grokking_time_vs_alpha.png", "law.png", "heatmap.png", "overlay.png")
    for name in ("report.csv", "report.md", *figures):
        assert (out / name).stat().st_size > 0
    header, *lines = (out / "report.csv").read_text().splitlines()
    assert len(lines) == 4
    for column in ("model.alpha", "model.weight_decay", "status", "grokking_time", "test/acc"):
        assert column in header.split(",")
    law = json.loads((out / "law.json").read_text())
    assert law["n"] == 4 and law["slope_se"] > 0
    assert f"λ·t_grok = {law['slope']:.3f}" in result.stdout
    # the law's points are the runs' own numbers: λ·t_grok grows with α at each λ
    rows, swept = collect(out, sorted(p for p in out.iterdir() if (p / "summary.json").exists()))
    assert swept == ["model.alpha", "model.weight_decay", "trainer.max_steps"]
    assert colour_parameter(rows, swept) == "model.alpha"  # the overlay's colours
    assert colour_parameter(rows, ["seed_everything", "model.weight_decay"]) == "model.weight_decay"
    for wd in (0.05, 0.1):
        times = {r["alpha"]: r["grokking_time"] for r in rows if r["weight_decay"] == wd}
        assert times[256] > times[16]


def test_law_fit_recovers_a_known_slope():
    rows = [
        {"alpha": a, "weight_decay": wd, "grokking_time": (0.8 * math.log(a) - 1) / wd}
        for a in (16, 64, 256, 1024)
        for wd in (0.01, 0.02)
    ]
    rows.append({"alpha": 1, "weight_decay": 0.01, "grokking_time": 5.0})  # ln 1 = 0: left out
    rows.append({"alpha": 64, "weight_decay": 0.01, "grokking_time": None})  # never grokked
    law = fit_law(rows)
    assert law is not None and law.n == 8
    assert law.slope == pytest.approx(0.8) and law.intercept == pytest.approx(-1)
    assert law.slope_se < 1e-9
    assert fit_law(rows[:2]) is None


def test_theory_line_only_for_runs_the_theory_speaks_for():
    rows = [
        {"weight_decay": 0.01, "predicted_transition_time": 230.0},
        {"weight_decay": 0.001, "predicted_transition_time": None},  # e.g. AdamW or an MLP
    ]
    assert _theory_applies(rows, 0.01) and not _theory_applies(rows, 0.001)
