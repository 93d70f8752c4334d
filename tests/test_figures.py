"""``grokkit figures``: the panel table is consistent and every run's arguments build, the dry run
prints the commands, bad input is one line, and panels and table are drawn from run directories
(small synthetic ones here: no training in these tests)."""

import json
import math
import re
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from grokkit.cli import USAGE, main
from grokkit.figures import PANELS, RUNS, FigureMaker, runs_of
from grokkit.lightning_cli import check_fit_args
from grokkit.report.figures import PLOTS, TABLE_HEADER
from grokkit.rundir import MetricsCSVLogger, read_summary, write_config, write_summary

MAX_PNG_BYTES = 300_000


def test_every_panel_names_known_runs_and_a_plot_kind():
    for pid, panel in PANELS.items():
        assert panel.kind in PLOTS, pid
        assert all(name in RUNS for _, name in panel.runs), pid
    used = {name for panel in PANELS.values() for _, name in panel.runs}
    assert used == set(RUNS), f"runs in no panel: {set(RUNS) - used}"


def test_a_run_shared_by_two_panels_runs_once():
    names = runs_of(["2b", "2c"])
    assert len(names) == len(set(names)) == 6
    assert names.index("e3_alpha1") < names.index("e3_wd3e-3")  # smallest first


@pytest.mark.parametrize("name", list(RUNS))
def test_every_run_composes_and_its_overrides_are_accepted(name, tmp_path):
    run = RUNS[name]
    assert all((REPO / path).is_file() for path in run.configs)
    args = run.fit_args(tmp_path / name)
    assert args.count("--config") == len(run.configs)
    check_fit_args(args)  # raises ConfigError on any bad key or value; trains nothing
    assert not (tmp_path / name).exists()
    assert "--model.integrator=adaptive" in run.overrides
    # every run ends at a flow-time horizon, but loss-normalized E4 (t past 10^308) at a budget
    bounds = [
        o.split("=")[0]
        for o in run.overrides
        if o.startswith(("--model.max_flow_time=", "--trainer.max_time="))
    ]
    assert bounds == ["--trainer.max_time" if name == "e4_no_decay" else "--model.max_flow_time"]


def test_fig2_horizons_are_in_lambda_t_of_each_runs_own_weight_decay():
    for name in runs_of(["2a", "2b", "2c"]):
        run = RUNS[name]
        decay = None
        for path in run.configs:  # the variant's λ, else the base's
            decay = yaml.safe_load((REPO / path).read_text())["model"].get("weight_decay", decay)
        horizon = next(o for o in run.overrides if o.startswith("--model.max_flow_time="))
        lam_t = float(horizon.split("=")[1]) * decay
        assert lam_t == pytest.approx(round(lam_t), rel=1e-5) and 5 <= lam_t <= 14, name
        assert "--model.rtol=1e-2" in run.overrides, name


def test_a_fresh_start_records_its_own_wall_time_not_an_earlier_attempts(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "figures"
    runs.mkdir()
    old = {"e1_sparse_grokking": {"seconds": 999.0, "attempts": 1, "status": "interrupted"}}
    (runs / "figures.json").write_text(json.dumps({"runs": old}))  # its run directory is gone

    def fake_launch(self, argv, name):
        _synthetic_run(runs / name, name)
        return 0

    monkeypatch.setattr(FigureMaker, "_launch", fake_launch)
    assert main(["figures", "--only", "1a", "--runs", str(runs), "--out", str(out)]) == 0
    assert FigureMaker(["1a"], out, runs).manifest["e1_sparse_grokking"]["seconds"] < 60


def test_dry_run_prints_every_command_and_trains_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    _synthetic_run(runs / "e1_sparse_grokking", "e1_sparse_grokking")
    assert main(["figures", "--dry-run", "--runs", str(runs), "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(commands) == len(RUNS)
    assert all(c.startswith(f"{sys.executable} -m grokkit fit --config ") for c in commands)
    assert "# e1_sparse_grokking (panels 1a): done, skipped" in out
    assert "# e3_alpha10_wd1e-4 (panels 2b, 2c): to run" in out
    assert sorted(p.name for p in runs.iterdir()) == ["e1_sparse_grokking"]
    assert not (tmp_path / "f").exists()


def test_dry_run_only_lists_the_panels_runs(tmp_path, capsys):
    assert main(["figures", "--only", "2b,1a", "--dry-run", "--runs", str(tmp_path)]) == 0
    names = [line.split()[1] for line in capsys.readouterr().out.splitlines()[:-1:2]]
    assert names == ["e1_sparse_grokking", "e3_alpha1", "e3_alpha10_wd1e-4", "e3_alpha100"]


@pytest.mark.parametrize(
    "args", [["--only", "1a,9z"], ["--only", ","], ["--bogus"], ["--jobs", "0"], ["--jobs", "x"]]
)
def test_bad_input_is_one_line_and_exit_2(args, capsys):
    assert main(["figures", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("grokkit: error: figures:")


def test_panels_and_table_are_drawn_from_run_directories(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "figures"
    for name in RUNS:
        if name != "e3_wd3e-3":  # a run not made yet: its panel is drawn without it
            _synthetic_run(runs / name, name)
    maker = FigureMaker(list(PANELS), out, runs)
    maker.manifest = {"e1_sparse_grokking": {"seconds": 151.0}}
    kinds = ["1a", "2b", "2c", "3", "4"]  # one panel of each plot kind (1b and 2a are as 1a)
    assert maker.draw(kinds) == set(kinds)
    for pid in kinds:
        png = out / f"fig{pid}.png"
        assert png.is_file() and 0 < png.stat().st_size < MAX_PNG_BYTES, pid
    table = (out / "table.md").read_text().splitlines()
    rows = {
        line.split(" | ")[1]: line for line in table if line.startswith("| ") and "---" not in line
    }
    assert set(rows) == {*RUNS, "run"}
    assert "| 1a | e1_sparse_grokking | completed | 2.5 min | 300 |" in rows["e1_sparse_grokking"]
    assert "| 2b, 2c | e3_alpha10_wd1e-4 |" in rows["e3_alpha10_wd1e-4"]
    assert "| not run |" in rows["e3_wd3e-3"]
    assert "(2.3)" in rows["e3_alpha10_wd1e-4"]  # ln α/λ in λt: ln 10
    column = TABLE_HEADER.index("test acc. halfway t (λt)")
    half = rows["e3_alpha10_wd1e-4"].split(" | ")[column]  # the rise's middle: λt = 3
    assert float(half.split("(")[1].rstrip(")")) == pytest.approx(3.0, abs=0.1)
    assert "MSE" in rows["e5_matrix_completion"] and "10^" in rows["e4_no_decay"]


def test_run_makes_missing_runs_skips_finished_ones_and_records_wall_time(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "figures"
    launched = []

    def fake_launch(self, argv, name):  # stands in for the grokkit fit process
        launched.append(name)
        _synthetic_run(runs / name, name)
        return 0

    monkeypatch.setattr(FigureMaker, "_launch", fake_launch)
    assert main(["figures", "--only", "3,1a", "--runs", str(runs), "--out", str(out)]) == 0
    assert launched == ["e1_sparse_grokking", "e5_matrix_completion"]
    assert (out / "fig1a.png").is_file() and (out / "fig3.png").is_file()
    assert not (out / "fig2b.png").exists()
    manifest = FigureMaker(["1a"], out, runs).manifest
    assert manifest["e5_matrix_completion"]["exit_code"] == 0
    assert manifest["e5_matrix_completion"]["seconds"] >= 0
    table = (out / "table.md").read_text()  # (the stand-in run's wall time: 0 s, 1 s if slow)
    assert re.search(r"\| 3 \| e5_matrix_completion \| completed \| \d+ s \|", table)
    launched.clear()
    assert main(["figures", "--only", "3", "--runs", str(runs), "--out", str(out)]) == 0
    assert launched == []


def test_draw_only_redraws_from_the_runs_as_they_are_and_trains_nothing(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "figures"
    _synthetic_run(runs / "e1_sparse_grokking", "e1_sparse_grokking")
    monkeypatch.setattr(FigureMaker, "_launch", lambda *args: pytest.fail("launched a run"))
    argv = ["figures", "--only", "1a,1b", "--draw-only", "--runs", str(runs), "--out", str(out)]
    assert main(argv) == 0
    assert (out / "fig1a.png").is_file() and not (out / "fig1b.png").exists()
    assert "| 1b | e2_misgrokking | not run |" in (out / "table.md").read_text()


def test_an_unfinished_run_directory_is_set_aside_not_overwritten(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "e1_sparse_grokking").mkdir(parents=True)
    (runs / "e1_sparse_grokking" / "metrics.csv").write_text("step,time\n")  # killed run
    monkeypatch.setattr(FigureMaker, "_launch", lambda self, argv, name: 1)
    assert main(["figures", "--only", "1a", "--runs", str(runs), "--out", str(tmp_path)]) == 1
    assert (runs / "e1_sparse_grokking.attempt-1" / "metrics.csv").is_file()


def test_a_killed_run_continues_with_ckpt_path_last_and_a_signal_death_is_interrupted(
    tmp_path, monkeypatch
):
    runs = tmp_path / "runs"
    run_dir = runs / "e1_sparse_grokking"
    run_dir.mkdir(parents=True)
    write_config(run_dir, "seed_everything: 0\n")
    write_summary(run_dir, {"status": "running"})  # its process died: SIGKILL, or the machine
    commands = []

    def killed_again(self, argv, name):
        commands.append(argv)
        return -signal.SIGKILL

    monkeypatch.setattr(FigureMaker, "_launch", killed_again)
    assert main(["figures", "--only", "1a", "--runs", str(runs), "--out", str(tmp_path)]) == 1
    assert commands[0][-1] == "--ckpt_path=last" and (run_dir / "config.yaml").is_file()
    record = FigureMaker(["1a"], tmp_path, runs).manifest["e1_sparse_grokking"]
    assert (record["status"], record["exit_code"]) == ("interrupted", -signal.SIGKILL)


def test_jobs_runs_that_many_fits_at_once_and_records_each(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "figures"
    both_running = threading.Barrier(2, timeout=20)  # broken unless two launches overlap

    def fake_launch(self, argv, name):
        both_running.wait()
        _synthetic_run(runs / name, name)
        return 0

    monkeypatch.setattr(FigureMaker, "_launch", fake_launch)
    assert (
        main(["figures", "--only", "1a,1b", "--jobs", "2", "--runs", str(runs), "--out", str(out)])
        == 0
    )
    manifest = FigureMaker(["1a"], out, runs).manifest
    assert {manifest[n]["status"] for n in ("e1_sparse_grokking", "e2_misgrokking")} == {
        "completed"
    }
    assert (out / "fig1a.png").is_file() and (out / "fig1b.png").is_file()


def test_jobs_share_the_cores_unless_the_user_set_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert FigureMaker(["1a"], tmp_path, tmp_path, jobs=4).child_env()["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in FigureMaker(["1a"], tmp_path, tmp_path).child_env()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert FigureMaker(["1a"], tmp_path, tmp_path, jobs=4).child_env()["OMP_NUM_THREADS"] == "3"


def test_figures_is_in_the_usage():
    assert "  figures " in USAGE


# ------------------------------------------------------------------------------ synthetic runs


def _synthetic_run(run_dir: Path, name: str) -> None:
    """A finished run directory shaped like the real one's: rising test accuracy (or falling test
    MSE, or a log10_time clock for the loss-normalized E4), λ and α in config.yaml."""
    alpha, decay = (1.0, 0.0) if name == "e4_no_decay" else (10.0, 1e-4)
    regression, log_clock = name == "e5_matrix_completion", name == "e4_no_decay"
    run_dir.mkdir(parents=True, exist_ok=True)
    model = {"alpha": alpha, "weight_decay": decay, "lr_normalize_by_loss": log_clock}
    write_config(run_dir, yaml.safe_dump({"model": model}))
    logger = MetricsCSVLogger(run_dir)
    times = np.concatenate([[0.0], np.logspace(-2, 5, 60)])
    for step, t in enumerate(times):
        rise = 1 / (1 + math.exp(-(decay * t - 3) * 3)) if decay else min(1.0, t / 1e5)
        row = {"step": step, "time": float(t), "param_norm": alpha * math.exp(-decay * t)}
        row |= {"train/loss": 1e-3 + math.exp(-t), "test/loss": 0.1 * (1 - rise) + 1e-4}
        if not regression:
            row |= {"train/acc": min(1.0, 0.1 + t), "test/acc": rise}
        if log_clock:
            row |= {"log10_time": math.log10(t) if t > 0 else -math.inf, "train/log_loss": -t}
        logger.log_metrics(row)
    summary = {"status": "completed", "integrator": "gd" if log_clock else "adaptive"}
    summary |= {"gradient_evaluations": 300, "memorization_time": 0.9, "grokking_time": 3.2e4}
    summary |= {"misgrokking_time": None, "predicted_transition_time": None}
    if decay:
        summary["predicted_transition_time"] = math.log(alpha) / decay
    summary |= {k: v for k, v in row.items() if k != "step"}
    if log_clock:
        summary |= {"memorization_log10_time": 0.1, "grokking_log10_time": None}
    write_summary(run_dir, summary)
    assert read_summary(run_dir)["status"] == "completed"


def test_two_commands_sharing_a_runs_directory_keep_each_others_records(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    first, second = FigureMaker(["1a"], out, runs), FigureMaker(["3"], out, runs)  # both load {}
    first.manifest["e1_sparse_grokking"] = {"seconds": 10.0}
    first._save_manifest()
    second.manifest["e5_matrix_completion"] = {"seconds": 20.0}
    second.manifest["e1_sparse_grokking"] = {"seconds": 99.0}  # not its run: left alone
    second._save_manifest()
    manifest = FigureMaker(["1a", "3"], out, runs).manifest
    assert manifest == {
        "e1_sparse_grokking": {"seconds": 10.0},
        "e5_matrix_completion": {"seconds": 20.0},
    }
