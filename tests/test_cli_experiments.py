"""`grokkit fit` on the experiment configs (E2, E3, E5): bad inputs are one line and exit 2, and
a tiny run of each task kind completes with the right metrics columns."""

import csv
import json
import math
from pathlib import Path

import pytest

from grokkit.cli import main
from grokkit.rundir import BASE_COLUMNS

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "cpu"
E2 = CONFIGS / "e2_misgrokking.yaml"
E3 = CONFIGS / "e3_modular_grokking.yaml"
E5 = CONFIGS / "e5_matrix_completion.yaml"


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


BAD_INPUTS = [
    (E3, ["--data.p=1"], ("data.p", "model.net.p")),
    (E3, ["--data.train_fraction=1.5"], ("data.train_fraction",)),
    (E3, ["--data.train_fraction=0"], ("data.train_fraction",)),
    (E3, ["--data.operation=pow"], ("data.operation", "operation")),
    (E3, ["--data.operation=div", "--data.p=96"], ("data.p",)),
    (E5, ["--data.observed_fraction=1.0"], ("data.observed_fraction",)),
    (E5, ["--data.observed_fraction=0"], ("data.observed_fraction",)),
]


@pytest.mark.parametrize(
    ("config", "extra", "named"),
    BAD_INPUTS,
    ids=[f"{c.stem[:2]}:{' '.join(e)}" for c, e, _ in BAD_INPUTS],
)
def test_bad_experiment_input_is_one_line_and_exit_2(config, extra, named, capsys):
    assert config.is_file(), config
    assert main(["fit", "--config", str(config), *extra]) == 2
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err_lines) == 1, err_lines
    assert err_lines[0].startswith("grokkit: error:")
    # data.p=1 reaches the net first through the ${data.init_args.p} interpolation, so either
    # key that carries the user's value is accepted there
    assert any(key in err_lines[0] for key in named), err_lines[0]
    assert not Path("runs").exists()  # rejected before any run directory exists


def _fit(config: Path, *extra: str) -> Path:
    assert config.is_file(), config
    run = Path("runs") / config.stem
    assert main(["fit", "--config", str(config), "--trainer.max_steps=3", *extra]) == 0
    s = _summary(run)
    assert s["status"] == "completed" and s["steps"] == 3
    rows = _rows(run)
    assert [int(r["step"]) for r in rows][0] == 0 and int(rows[-1]["step"]) == 3
    assert all(math.isfinite(float(v)) for r in rows for v in r.values() if v != "")
    return run


def test_tiny_e2_binary_classification_run():
    run = _fit(E2, "--data.d=200", "--data.n_train=16", "--data.n_test=100")
    rows = _rows(run)
    assert list(rows[0])[: len(BASE_COLUMNS)] == BASE_COLUMNS
    first = {k: float(v) for k, v in rows[0].items() if v != ""}
    # diagonal net at u = v: zero output, logistic loss ln 2, ties count half, ‖θ0‖ = α = 128
    assert first["train/loss"] == pytest.approx(math.log(2), rel=1e-6)
    assert first["train/acc"] == first["test/acc"] == 0.5
    assert first["param_norm"] == pytest.approx(128.0, rel=1e-5)
    assert _summary(run)["predicted_transition_time"] == pytest.approx(math.log(128) / 0.01)


def test_tiny_e3_modular_classification_run():
    run = _fit(E3, "--model.net.init_args.width=32", "--data.p=11")
    rows = _rows(run)
    assert list(rows[0])[: len(BASE_COLUMNS)] == BASE_COLUMNS
    first = {k: float(v) for k, v in rows[0].items() if v != ""}
    # W2 = 0 at init: all logits zero, cross-entropy ln p on both splits
    assert first["train/loss"] == pytest.approx(math.log(11), rel=1e-6)
    assert first["test/loss"] == pytest.approx(math.log(11), rel=1e-6)
    assert 0 <= float(rows[-1]["train/acc"]) <= 1


def test_tiny_e5_regression_run_has_no_accuracy_columns():
    d = 11
    run = _fit(E5, f"--data.d={d}")
    rows = _rows(run)
    header = list(rows[0])
    assert header[:5] == ["step", "time", "train/loss", "test/loss", "param_norm"]
    assert not any(column.endswith("/acc") for column in header)
    assert not any(key.endswith("/acc") for key in _summary(run))
    first = {k: float(v) for k, v in rows[0].items() if v != ""}
    # U = V = αI with α = 10: ‖θ0‖ = α·sqrt(2d), W = 0, so the summed squared error over both
    # splits is Σ_ij (ij/d²)² = (Σ_i i²)² / d⁴
    assert first["param_norm"] == pytest.approx(10 * math.sqrt(2 * d), rel=1e-5)
    n_train = round(0.05 * d * d)
    total = first["train/loss"] * n_train + first["test/loss"] * (d * d - n_train)
    assert total == pytest.approx(sum(i * i for i in range(d)) ** 2 / d**4, rel=1e-5)
