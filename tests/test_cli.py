"""The CLI end to end (`grokkit fit`, `validate`, `report`): run directory, agent-form overrides,
bad input as one line and exit 2, divergence, resume, signals; a tiny run of each experiment config
kind (E2, E3, E5) with the right metrics columns."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, SMALL_E1, TINY

from grokkit.cli import main
from grokkit.rundir import BASE_COLUMNS

CONFIGS = REPO / "configs" / "cpu"
E2 = CONFIGS / "e2_misgrokking.yaml"
E3 = CONFIGS / "e3_modular_grokking.yaml"
E5 = CONFIGS / "e5_matrix_completion.yaml"


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_fit_writes_complete_run_directory_with_agent_overrides():
    rc = main(
        [
            "fit",
            *TINY,
            "--model.alpha=100",
            "--seed_everything=3",
            "--phases.grokking_threshold=0.9",
        ]
    )
    assert rc == 0
    run = Path("runs/quickstart")
    for name in (
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "curves.png",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 60
    for key in (
        "memorization_step",
        "memorization_time",
        "grokking_step",
        "grokking_time",
        "misgrokking_step",
        "predicted_transition_time",
        "thresholds",
    ):
        assert key in s
    assert s["thresholds"]["grokking_test_acc"] == 0.9
    assert s["predicted_transition_time"] == pytest.approx(
        torch.log(torch.tensor(100.0)).item() / 0.01, rel=1e-6
    )
    rows = read_rows(run)
    assert list(rows[0])[: len(BASE_COLUMNS)] == BASE_COLUMNS
    assert [int(r["step"]) for r in rows][0] == 0 and int(rows[-1]["step"]) == 60
    assert float(rows[0]["param_norm"]) == pytest.approx(100.0, rel=1e-5)
    # every metrics.csv column's final value is in the summary
    for key, value in rows[-1].items():
        assert s[key] == pytest.approx(float(value))
    # time is the running sum of learning rates
    assert float(rows[-1]["time"]) == pytest.approx(60 * 0.01)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["alpha"] == 100.0 and saved["seed_everything"] == 3
    assert saved["data"]["init_args"]["d"] == 500
    assert saved["model"]["net"]["init_args"]["d"] == 500  # the interpolation, resolved


def test_config_yaml_reproduces_the_run_in_a_new_directory():
    assert main(["fit", *TINY]) == 0
    assert main(["fit", "--config", "runs/quickstart/config.yaml"]) == 0
    first, second = read_rows(Path("runs/quickstart")), read_rows(Path("runs/quickstart-2"))
    assert first == second
    assert summary(Path("runs/quickstart"))["status"] == "completed"


def test_overrides_flow_through_interpolation():
    assert main(["fit", *TINY, "--data.d=300", "--run_dir=runs/d300"]) == 0
    saved = yaml.safe_load(Path("runs/d300/config.yaml").read_text())
    assert saved["model"]["net"]["init_args"]["d"] == 300


def test_small_run_groks():
    """Train accuracy 100% at once, test accuracy near chance for >100x longer, then >= 95%."""
    assert main(["fit", *SMALL_E1, "--trainer.max_steps=1500", "--run_dir=runs/groks"]) == 0
    s = summary(Path("runs/groks"))
    rows = read_rows(Path("runs/groks"))
    assert s["memorization_step"] is not None and s["memorization_step"] <= 5
    assert s["grokking_step"] is not None
    assert s["grokking_step"] >= 100 * s["memorization_step"]
    plateau = [
        float(r["test/acc"])
        for r in rows
        if s["memorization_step"] <= int(r["step"]) < s["grokking_step"] // 2
    ]
    assert max(plateau) < 0.7  # near chance while the train accuracy is already 100%
    assert s["test/acc"] >= 0.95 and s["train/acc"] == 1.0


# ---------------------------------------------------------------- bad input

_NORMALIZED_ADAPTIVE = [
    "--model.integrator=adaptive",
    "--model.lr_normalize_by_loss=true",
    "--model.weight_decay=0",
]
BAD_INPUTS = [
    (["--model.alfa=3"], "model.alfa"),
    (["--model.alpha=abc"], "model.alpha"),
    (["--model.alpha=0"], "model.alpha"),
    (["--model.alpha=-2"], "model.alpha"),
    (["--model.weight_decay=-0.1"], "model.weight_decay"),
    (["--model.lr=0"], "model.lr"),
    (["--data.n_train=0"], "data.n_train"),
    (["--data.k=501"], "data.k"),
    (["--data.k=2"], "data.k"),
    (["--trainer.max_steps=1000.0"], "trainer.max_steps"),
    (["--trainer.max_steps=-1"], "trainer.max_steps"),
    (["--phases.grokking_threshold=1.5"], "phases.grokking_threshold"),
    (["--config", "does_not_exist.yaml"], "does_not_exist.yaml"),
    (["--ckpt_path=missing.ckpt"], "missing.ckpt"),
    (["--model.integrator=adaptive", "--model.optimizer=adamw"], "model.integrator=adaptive"),
    (["--model.integrator=adaptive", "--model.batch_size=32"], "model.batch_size"),
    (["--model.integrator=rk4"], "model.integrator"),
    (["--model.rtol=0"], "model.rtol"),
    (["--model.max_flow_time=-1"], "model.max_flow_time"),
    (["--model.lr_normalize_by_loss=true"], "model.lr_normalize_by_loss"),  # with λ > 0
    (_NORMALIZED_ADAPTIVE + ["--model.lr_plain=0.1"], "model.lr_plain"),
    (_NORMALIZED_ADAPTIVE + ["--model.max_flow_time=10"], "model.max_flow_time"),
]


@pytest.mark.parametrize(
    ("extra", "named"), BAD_INPUTS, ids=[b[1] + str(i) for i, b in enumerate(BAD_INPUTS)]
)
def test_bad_input_is_one_line_and_exit_2(extra, named, capsys):
    assert main(["fit", *TINY, *extra]) == 2
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err_lines) == 1, err_lines
    assert err_lines[0].startswith("grokkit: error:") and named in err_lines[0]
    assert not Path("runs").exists()  # no run directory that could look like a run


def test_a_variant_config_alone_says_to_give_its_base_first(capsys):
    assert main(["fit", "--config", str(REPO / "configs" / "cpu" / "e3_alpha100.yaml")]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert line.startswith("grokkit: error:") and "--config BASE.yaml --config VARIANT" in line
    assert not Path("runs").exists()


def test_malformed_yaml_and_unknown_command(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    assert main(["fit", "--config", str(bad)]) == 2
    assert main(["fly"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(errors) == 2 and all(e.startswith("grokkit: error:") for e in errors)


def test_dimension_mismatch_is_reported_as_bad_input(capsys):
    assert main(["fit", *TINY, "--model.net.init_args.d=7"]) == 2
    err = capsys.readouterr().err
    assert "model.net.d=7 does not match the data's input dimension 500" in err
    assert not Path("runs").exists()  # found before the run directory is claimed


def test_a_callback_given_twice_is_one_line_of_bad_input(capsys):
    # the quickstart config already has an NTKAlignment
    argv = [
        "fit",
        *SMALL_E1,
        "--trainer.max_steps=3",
        "--trainer.callbacks+=grokkit.callbacks.NTKAlignment",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trainer.callbacks: NTKAlignment given twice" in err
    assert not Path("runs").exists()


EXPERIMENT_BAD_INPUTS = [
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
    EXPERIMENT_BAD_INPUTS,
    ids=[f"{c.stem[:2]}:{' '.join(e)}" for c, e, _ in EXPERIMENT_BAD_INPUTS],
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


# ---------------------------------------------------------------- exit codes, resume, signals


def test_divergence_stops_the_run_with_status_diverged():
    assert main(["fit", *TINY, "--model.lr=1e6"]) == 3
    s = summary(Path("runs/quickstart"))
    assert s["status"] == "diverged" and s["steps"] < 60
    assert (Path("runs/quickstart") / "checkpoints" / "last.ckpt").is_file()


def test_resume_continues_exactly_and_keeps_phase_state():
    straight = ["fit", *SMALL_E1, "--trainer.max_steps=400"]
    assert main([*straight, "--run_dir=runs/straight"]) == 0
    assert main(["fit", *SMALL_E1, "--trainer.max_steps=150", "--run_dir=runs/resumed"]) == 0
    ckpt = "runs/resumed/checkpoints/last.ckpt"
    assert (
        main(
            [
                "fit",
                "--config",
                "runs/resumed/config.yaml",
                "--trainer.max_steps=400",
                f"--ckpt_path={ckpt}",
            ]
        )
        == 0
    )
    a, b = summary(Path("runs/straight")), summary(Path("runs/resumed"))
    assert b["status"] == "completed" and b["steps"] == 400
    assert b["param_norm"] == a["param_norm"] and b["train/loss"] == a["train/loss"]
    assert b["time"] == pytest.approx(a["time"], rel=1e-12)
    assert b["memorization_step"] == a["memorization_step"] == 1  # restored, not re-detected
    steps = [int(r["step"]) for r in read_rows(Path("runs/resumed"))]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # appended, no duplicates


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_checkpoint_and_nonzero_exit(tmp_path, signum):
    cmd = [
        sys.executable,
        "-m",
        "grokkit.cli",
        "fit",
        *TINY,
        "--trainer.max_steps=100000000",
        "--run_dir=runs/sig",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    for line in proc.stdout:  # wait until training is under way
        if line.startswith("step") and int(line.split()[1].split("/")[0]) >= 10:
            break
    time.sleep(0.5)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    s = summary(Path("runs/sig"))
    assert s["status"] == "interrupted" and 10 < s["steps"] < 100000000
    assert (Path("runs/sig") / "checkpoints" / "last.ckpt").is_file()
    # the stop landed inside a chunk: no unscheduled row; the summary's values are the last row's
    last_row = read_rows(Path("runs/sig"))[-1]
    assert int(last_row["step"]) == s["step"] <= s["steps"]


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "report"):
        assert f"  {command}" in out


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_installed_package_version(capsys, flag):
    import importlib.metadata

    import grokkit

    assert main([flag]) == 0
    assert capsys.readouterr().out.strip() == f"grokkit {grokkit.__version__}"
    assert importlib.metadata.version("grokkit") == grokkit.__version__


def test_package_exports_the_task_and_is_typed():
    import grokkit
    from grokkit import AdaptiveFlow, GrokTask
    from grokkit.integrators import AdaptiveFlow as Integrator
    from grokkit.task import GrokTask as Task

    assert GrokTask is Task and AdaptiveFlow is Integrator
    assert (Path(grokkit.__file__).parent / "py.typed").is_file()
    # every model, data module and callback too, the same objects as in their packages
    import grokkit.callbacks
    import grokkit.data
    import grokkit.models

    packages = (grokkit.models, grokkit.data, grokkit.callbacks)
    for package in packages:
        for name in package.__all__:
            assert getattr(grokkit, name) is getattr(package, name)
    listed = set(grokkit.__all__) - {"GrokTask", "AdaptiveFlow", "__version__"}
    assert listed <= {name for package in packages for name in package.__all__}
    assert {"DiagonalNet", "SparseLinearData", "PhaseDetector", "NTKAlignment"} <= listed
    assert set(grokkit.__all__) <= set(dir(grokkit))
    # and lazily: importing the package alone imports neither torch nor Lightning
    code = "import sys, grokkit; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "'torch'" not in loaded and "'lightning'" not in loaded, loaded
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        grokkit.Nope  # noqa: B018


@pytest.mark.parametrize("command", ["sweep", "agent", "report", "figures", "fit"])
def test_files_named_in_help_exist(capsys, command):
    try:
        assert main([command, "--help"]) == 0
    except SystemExit as exit_:  # argparse-based commands exit from --help
        assert exit_.code == 0
    out = capsys.readouterr().out
    named = set(re.findall(r"(?:configs|sweeps)/[\w./-]+\.yaml", out))
    missing = [p for p in named if not (REPO / p).is_file()]
    assert not missing, missing


def test_validate_and_report_on_a_finished_run(capsys):
    assert main(["fit", *TINY]) == 0
    (Path("runs/quickstart") / "curves.png").unlink()
    assert main(["report", "runs/quickstart"]) == 0
    assert (Path("runs/quickstart") / "curves.png").is_file()
    assert "completed" in capsys.readouterr().out
    assert (
        main(
            [
                "validate",
                "--config",
                "runs/quickstart/config.yaml",
                "--ckpt_path=runs/quickstart/checkpoints/last.ckpt",
            ]
        )
        == 0
    )
    assert main(["report", "nowhere"]) == 2


# ---------------------------------------------------------------- tiny runs of each task kind


def _fit(config: Path, *extra: str) -> Path:
    assert config.is_file(), config
    run = Path("runs") / config.stem
    assert main(["fit", "--config", str(config), "--trainer.max_steps=3", *extra]) == 0
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 3
    rows = read_rows(run)
    assert [int(r["step"]) for r in rows][0] == 0 and int(rows[-1]["step"]) == 3
    assert all(math.isfinite(float(v)) for r in rows for v in r.values() if v != "")
    return run


def test_tiny_e2_binary_classification_run():
    run = _fit(E2, "--data.d=200", "--data.n_train=16", "--data.n_test=100")
    rows = read_rows(run)
    assert list(rows[0])[: len(BASE_COLUMNS)] == BASE_COLUMNS
    first = {k: float(v) for k, v in rows[0].items() if v != ""}
    # diagonal net at u = v: zero output, logistic loss ln 2, ties count half, ‖θ0‖ = α = 128
    assert first["train/loss"] == pytest.approx(math.log(2), rel=1e-6)
    assert first["train/acc"] == first["test/acc"] == 0.5
    assert first["param_norm"] == pytest.approx(128.0, rel=1e-5)
    assert summary(run)["predicted_transition_time"] == pytest.approx(math.log(128) / 0.01)


def test_tiny_e3_modular_classification_run():
    run = _fit(E3, "--model.net.init_args.width=32", "--data.p=11")
    rows = read_rows(run)
    assert list(rows[0])[: len(BASE_COLUMNS)] == BASE_COLUMNS
    first = {k: float(v) for k, v in rows[0].items() if v != ""}
    # W2 = 0 at init: all logits zero, cross-entropy ln p on both splits
    assert first["train/loss"] == pytest.approx(math.log(11), rel=1e-6)
    assert first["test/loss"] == pytest.approx(math.log(11), rel=1e-6)
    assert 0 <= float(rows[-1]["train/acc"]) <= 1


def test_tiny_e5_regression_run_has_no_accuracy_columns():
    d = 11
    run = _fit(E5, f"--data.d={d}")
    rows = read_rows(run)
    header = list(rows[0])
    assert header[:5] == ["step", "time", "train/loss", "test/loss", "param_norm"]
    assert not any(column.endswith("/acc") for column in header)
    assert not any(key.endswith("/acc") for key in summary(run))
    first = {k: float(v) for k, v in rows[0].items() if v != ""}
    # U = V = αI with α = 10: ‖θ0‖ = α·sqrt(2d), W = 0, so the summed squared error over both
    # splits is Σ_ij (ij/d²)² = (Σ_i i²)² / d⁴
    assert first["param_norm"] == pytest.approx(10 * math.sqrt(2 * d), rel=1e-5)
    n_train = round(0.05 * d * d)
    total = first["train/loss"] * n_train + first["test/loss"] * (d * d - n_train)
    assert total == pytest.approx(sum(i * i for i in range(d)) ** 2 / d**4, rel=1e-5)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--data.d=400"], "does not match this config: net.u has shape (500,) in the checkpoint"),
        (["--data.seed=7"], "holds a run with other data settings"),
        (["--model.net.init_args.depth=3"], "holds a run with other model.net settings"),
    ],
)
def test_resume_into_another_run_is_refused_before_anything_is_written(capsys, overrides, message):
    """A checkpoint continues its own run directory; one this config cannot continue (another
    shape, other data, another net) is one line, exit 2, and that run is byte-identical."""
    assert main(["fit", *TINY, "--run_dir=runs/other"]) == 0
    before = _snapshot(Path("runs/other"))
    capsys.readouterr()
    ckpt = "--ckpt_path=runs/other/checkpoints/last.ckpt"
    assert main(["fit", *TINY, *overrides, "--trainer.max_steps=80", ckpt]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _snapshot(Path("runs/other")) == before


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_unreadable_checkpoint_is_one_line(capsys, content):
    Path("bad.ckpt").write_bytes(content)
    assert main(["fit", *TINY, "--ckpt_path=bad.ckpt"]) == 2
    err = capsys.readouterr().err
    assert "bad.ckpt is not a readable grokkit checkpoint" in err and "Traceback" not in err
    assert not Path("runs").exists() or not any(Path("runs").iterdir())


@pytest.mark.parametrize("command", ["validate", "test"])
def test_evaluating_without_a_checkpoint_says_it_is_the_initialization(capsys, command):
    assert main([command, *TINY]) == 0
    assert f"{command}: no --ckpt_path given" in capsys.readouterr().err
    assert main(["fit", *TINY, "--run_dir=runs/done"]) == 0
    capsys.readouterr()
    assert main([command, *TINY, "--ckpt_path=runs/done/checkpoints/last.ckpt"]) == 0
    assert "no --ckpt_path" not in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "override"])
def test_environment_values_are_refused_not_written_into_the_run(capsys, monkeypatch, where):
    """A resolved ${oc.env:...} (a token, say) would land in config.yaml and the W&B config."""
    monkeypatch.setenv("GROKKIT_SECRET", "s3cr3t")
    extra = Path("extra.yaml")
    extra.write_text("data:\n  init_args:\n    n_test: ${oc.env:GROKKIT_SECRET}\n")
    args = (
        ["--config", str(extra)] if where == "file" else ["--data.n_test=${oc.env:GROKKIT_SECRET}"]
    )
    assert main(["fit", *TINY, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "${oc.env:...} is not supported" in err[0]
    assert not Path("runs").exists()
