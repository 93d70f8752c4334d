"""The run directory: metrics.csv logger, run-dir choice, atomic JSON."""

import csv
import json
import math

import pytest

from grokkit.rundir import BASE_COLUMNS, MetricsCSVLogger, choose_run_dir, write_json_atomic

EXPECTED_BASE = ["step", "time", "train/loss", "test/loss", "train/acc", "test/acc", "param_norm"]


def _metrics(step: int, **extra) -> dict:
    return {
        "step": step,
        "time": 0.01 * step,
        "train/loss": 1.0 / (step + 1),
        "test/loss": 2.0 / (step + 1),
        "train/acc": 1.0,
        "test/acc": 0.5,
        "param_norm": 128.0 - step,
        **extra,
    }


def _read(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def test_base_columns_constant():
    assert BASE_COLUMNS == EXPECTED_BASE


def test_header_puts_base_columns_first_then_extras(tmp_path):
    logger = MetricsCSVLogger(tmp_path)
    m = _metrics(0, **{"margin/normalized": 0.1, "kernel/test_acc": 0.5})
    scrambled = dict(reversed(list(m.items())))  # extras first, base columns backwards
    logger.log_metrics(scrambled, step=0)
    header, rows = _read(tmp_path / "metrics.csv")
    # base in the fixed order, extras after in the order they came
    assert header == EXPECTED_BASE + ["kernel/test_acc", "margin/normalized"]
    assert len(rows) == 1
    assert float(rows[0]["param_norm"]) == 128.0
    assert float(rows[0]["margin/normalized"]) == 0.1


def test_regression_rows_have_no_accuracy_columns(tmp_path):
    logger = MetricsCSVLogger(tmp_path)
    m = {k: v for k, v in _metrics(0).items() if "acc" not in k}
    logger.log_metrics(m, step=0)
    header, _ = _read(tmp_path / "metrics.csv")
    assert header == ["step", "time", "train/loss", "test/loss", "param_norm"]


def test_values_round_trip_exactly(tmp_path):
    logger = MetricsCSVLogger(tmp_path)
    values = [_metrics(s) for s in (0, 1, 7)]
    values[1]["time"] = 0.1 + 0.2  # not representable in short decimal
    for m in values:
        logger.log_metrics(m, step=m["step"])
    _, rows = _read(tmp_path / "metrics.csv")
    assert [float(r["time"]) for r in rows] == [m["time"] for m in values]
    assert [int(float(r["step"])) for r in rows] == [0, 1, 7]


def test_file_is_written_as_rows_arrive(tmp_path):
    logger = MetricsCSVLogger(tmp_path)
    logger.log_metrics(_metrics(0), step=0)
    assert len(_read(tmp_path / "metrics.csv")[1]) == 1
    logger.log_metrics(_metrics(1), step=1)
    assert len(_read(tmp_path / "metrics.csv")[1]) == 2


def test_late_column_widens_header_and_keeps_old_rows(tmp_path):
    logger = MetricsCSVLogger(tmp_path)
    logger.log_metrics(_metrics(0), step=0)
    logger.log_metrics(_metrics(1), step=1)
    logger.log_metrics(_metrics(2, **{"extra/late": 3.5}), step=2)
    logger.log_metrics(_metrics(3), step=3)  # the late column missing again
    header, rows = _read(tmp_path / "metrics.csv")
    assert header == EXPECTED_BASE + ["extra/late"]
    assert [int(float(r["step"])) for r in rows] == [0, 1, 2, 3]
    assert [r["extra/late"] for r in rows] == ["", "", "3.5", ""]
    assert [float(r["param_norm"]) for r in rows] == [128.0, 127.0, 126.0, 125.0]


def test_resume_drops_rows_after_resume_step(tmp_path):
    first = MetricsCSVLogger(tmp_path)
    for s in (0, 10, 20, 30, 40):
        first.log_metrics(_metrics(s, **{"extra/x": float(s)}), step=s)
    resumed = MetricsCSVLogger(tmp_path, resume_step=20)
    header, rows = _read(tmp_path / "metrics.csv")
    assert header == EXPECTED_BASE + ["extra/x"]
    assert [int(float(r["step"])) for r in rows] == [0, 10, 20]
    assert [float(r["extra/x"]) for r in rows] == [0.0, 10.0, 20.0]
    # continuing appends under the same header, no duplicate header line
    resumed.log_metrics(_metrics(30, **{"extra/x": 31.0}), step=30)
    header, rows = _read(tmp_path / "metrics.csv")
    assert header == EXPECTED_BASE + ["extra/x"]
    assert [int(float(r["step"])) for r in rows] == [0, 10, 20, 30]
    assert float(rows[-1]["extra/x"]) == 31.0
    text = (tmp_path / "metrics.csv").read_text()
    assert text.count("step,time") == 1


def test_resume_step_zero_keeps_only_the_initial_row(tmp_path):
    first = MetricsCSVLogger(tmp_path)
    for s in (0, 1, 2):
        first.log_metrics(_metrics(s), step=s)
    MetricsCSVLogger(tmp_path, resume_step=0)
    assert [r["step"] for r in _read(tmp_path / "metrics.csv")[1]] == ["0"]


def test_no_resume_step_does_not_touch_the_file_until_logging(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,time\n5,0.05\n")
    MetricsCSVLogger(tmp_path)
    assert path.read_text() == "step,time\n5,0.05\n"


def test_resume_without_existing_file(tmp_path):
    logger = MetricsCSVLogger(tmp_path, resume_step=100)
    assert not (tmp_path / "metrics.csv").exists()
    logger.log_metrics(_metrics(0), step=0)
    header, rows = _read(tmp_path / "metrics.csv")
    assert header == EXPECTED_BASE and len(rows) == 1


def test_logger_properties(tmp_path):
    logger = MetricsCSVLogger(tmp_path)
    assert logger.save_dir == str(tmp_path) == logger.log_dir
    assert logger.name == "metrics"


# ---------------------------------------------------------------- choose_run_dir


def test_new_run_dir_is_never_reused(tmp_path):
    base = tmp_path / "runs" / "x"
    first = choose_run_dir(str(base), "ignored", None)
    assert first == base and (base / "checkpoints").is_dir()  # created and claimed
    # claimed (checkpoints/ exists): the next fit gets x-2 even before anything else is written
    second = choose_run_dir(str(base), "ignored", None)
    assert second == tmp_path / "runs" / "x-2"
    (tmp_path / "runs" / "x-3").mkdir()  # an existing but empty directory may be used
    assert choose_run_dir(str(base), "ignored", None) == tmp_path / "runs" / "x-3"
    (tmp_path / "runs" / "x-4").mkdir()
    (tmp_path / "runs" / "x-4" / "metrics.csv").write_text("step\n")  # not empty: skipped
    assert choose_run_dir(str(base), "ignored", None) == tmp_path / "runs" / "x-5"


def test_concurrent_fits_never_share_a_run_dir(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    base = str(tmp_path / "runs" / "same")
    with ThreadPoolExecutor(8) as pool:
        dirs = list(pool.map(lambda _: choose_run_dir(base, "ignored", None), range(16)))
    assert len(set(dirs)) == 16


def test_default_run_dir_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = choose_run_dir(None, "e1-sparse", None)
    assert first.parts[-2:] == ("runs", "e1-sparse")
    assert choose_run_dir(None, "e1-sparse", None).parts[-2:] == ("runs", "e1-sparse-2")


def test_resume_from_last_ckpt_reuses_the_run_dir(tmp_path):
    run = tmp_path / "runs" / "x"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("a: 1\n")
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"")
    chosen = choose_run_dir(None, "other", str(ckpt))
    assert chosen.resolve() == run.resolve()
    # an explicit (different) requested dir does not win over the checkpoint's run dir
    chosen = choose_run_dir(str(tmp_path / "elsewhere"), "other", str(ckpt))
    assert chosen.resolve() == run.resolve()


def test_resume_from_ckpt_outside_a_run_dir_gets_a_fresh_dir(tmp_path):
    # checkpoints/ folder but no config.yaml beside it: not a run directory
    run = tmp_path / "runs" / "x"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"")
    assert choose_run_dir(str(run), "other", str(ckpt)) == tmp_path / "runs" / "x-2"
    # a loose checkpoint file
    loose = tmp_path / "model.ckpt"
    loose.write_bytes(b"")
    target = tmp_path / "new"
    assert choose_run_dir(str(target), "other", str(loose)) == target


# ---------------------------------------------------------------- write_json_atomic


def test_write_json_atomic_non_finite_as_strings(tmp_path):
    path = tmp_path / "summary.json"
    data = {
        "status": "diverged",
        "final": {"train/loss": math.nan, "param_norm": math.inf, "neg": -math.inf, "ok": 1.5},
        "history": [1.0, math.nan, (math.inf, 2)],
        "steps": 10,
        "none": None,
    }
    write_json_atomic(path, data)
    text = path.read_text()

    # strict JSON: no NaN/Infinity literals
    def reject(name):
        raise AssertionError(f"non-standard JSON literal {name}")

    loaded = json.loads(text, parse_constant=reject)
    assert loaded["final"] == {"train/loss": "nan", "param_norm": "inf", "neg": "-inf", "ok": 1.5}
    assert loaded["history"] == [1.0, "nan", ["inf", 2]]
    assert loaded["steps"] == 10 and loaded["none"] is None and loaded["status"] == "diverged"
    assert list(tmp_path.iterdir()) == [path]  # no .tmp left behind
    assert not (tmp_path / "summary.json.tmp").exists()
    # the input was not modified
    assert math.isnan(data["final"]["train/loss"])


def test_write_json_atomic_replaces_existing_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


@pytest.mark.parametrize("value", [0.0, -2.5, 1e300])
def test_write_json_atomic_keeps_finite_floats(tmp_path, value):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"v": value})
    assert json.loads(path.read_text())["v"] == value
