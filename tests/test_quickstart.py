"""The quickstart shows the whole phenomenon (slow: ~1 minute on 2 cores)."""

import csv
import json
from pathlib import Path

import pytest
from conftest import QUICKSTART

from grokkit.cli import main


@pytest.mark.slow
def test_quickstart_memorizes_plateaus_then_groks():
    assert main(["fit", "--config", str(QUICKSTART)]) == 0
    run = Path("runs/quickstart")
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed"
    assert s["memorization_step"] <= 5  # train accuracy 100% within a few steps
    assert s["grokking_step"] >= 100 * s["memorization_step"]
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    plateau = [
        float(r["test/acc"])
        for r in rows
        if s["memorization_step"] <= int(r["step"]) <= 100 * s["memorization_step"]
    ]
    assert max(plateau) < 0.6  # near chance on the plateau
    assert s["test/acc"] >= 0.95
