"""Exact resume: a run stopped anywhere (SIGTERM inside a chunk or on an evaluation point,
SIGKILL at any moment) and continued with ``--ckpt_path=last`` writes the same metrics.csv and
summary.json, byte for byte, as a run never stopped; and ``--ckpt_path=last`` continues only
its own run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUICKSTART, REPO, SMALL_E1, TINY

import grokkit.session
from grokkit.cli import main
from grokkit.integrators import AdaptiveFlow
from grokkit.schedule import EvalSchedule
from grokkit.task import GrokTask

E3 = REPO / "configs" / "cpu" / "e3_modular_grokking.yaml"
# all the dichotomy callbacks: margin, NTK alignment every 5th row, implicit-bias probe, phases
E1_ALL = [*TINY, "--trainer.max_steps=120", "--model.eval_points=30"]
# modular addition with NTK alignment every 3rd row and the Fourier probe
E3_SMALL = [
    "--config",
    str(E3),
    "--data.p=11",
    "--model.net.init_args.width=32",
    "--model.lr_warmup_steps=10",
    "--model.eval_points=20",
    "--trainer.max_steps=60",
    "--trainer.callbacks=[{class_path: grokkit.callbacks.NTKAlignment, init_args: "
    "{probe_size: 40, every: 3}}, {class_path: grokkit.callbacks.FourierProbe}, "
    "{class_path: grokkit.callbacks.NormalizedMargin}]",
]
ADAPTIVE = [*E1_ALL, "--model.integrator=adaptive", "--model.rtol=1e-2"]


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """curves.png is not under test here, and drawing it is most of a small run's time."""
    monkeypatch.setattr(grokkit.session, "plot_run", lambda run_dir: None)


def files(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in ("metrics.csv", "summary.json")}


def stop_after(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, n: int) -> None:
    """Request a stop (as the SIGTERM handler does) right after the n-th call of ``method``."""
    real, calls = getattr(cls, method), [0]

    def counted(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        calls[0] += 1
        task = self if isinstance(self, GrokTask) else STOPPABLE[0]
        task.stop_requested = task.stop_requested or calls[0] == n
        return result

    monkeypatch.setattr(cls, method, counted)


STOPPABLE: list[GrokTask] = []  # the task a patched AdaptiveFlow.step stops


@pytest.fixture
def remember_task(monkeypatch):
    real = GrokTask.on_train_start

    def remembered(self):
        STOPPABLE[:] = [self]
        real(self)

    monkeypatch.setattr(GrokTask, "on_train_start", remembered)


def straight_and_stopped(monkeypatch, args, stops, cls=GrokTask, method="gradient_step"):
    """The run ``args`` once straight, once stopped after each of ``stops`` calls of
    ``cls.method`` (counted from each start) and continued with ``--ckpt_path=last``."""
    assert main(["fit", *args, "--run_dir=runs/straight"]) == 0
    for n in stops:
        with monkeypatch.context() as patch:
            stop_after(patch, cls, method, n)
            resume = ["--config=runs/stopped/config.yaml", "--ckpt_path=last"]
            start = args if not Path("runs/stopped").exists() else resume
            assert main(["fit", *start, "--run_dir=runs/stopped"]) == 130
        assert json.loads(Path("runs/stopped/summary.json").read_text())["status"] == "interrupted"
    assert main(["fit", "--config=runs/stopped/config.yaml", "--ckpt_path=last"]) == 0
    return files(Path("runs/straight")), files(Path("runs/stopped"))


def test_gd_stops_inside_chunks_and_on_evaluation_points_resume_exactly(monkeypatch):
    schedule = EvalSchedule(120, 30).steps
    on_point = schedule[20]
    inside = next(s for a, s in zip(schedule, schedule[1:], strict=False) if s - a > 3) - 2
    # the second and third stops count steps from their own starts
    stops = [inside, on_point - inside, 7]
    straight, stopped = straight_and_stopped(monkeypatch, E1_ALL, stops)
    assert stopped == straight


def test_e3_with_fourier_and_ntk_cadence_resumes_exactly(monkeypatch):
    straight, stopped = straight_and_stopped(monkeypatch, E3_SMALL, [23, 5])
    assert stopped == straight
    header = straight["metrics.csv"].split(b"\n")[0].decode()
    assert "ntk/target_alignment" in header and "fourier/top_share" in header


def test_the_adaptive_integrator_stopped_mid_chunk_resumes_exactly(monkeypatch, remember_task):
    straight, stopped = straight_and_stopped(monkeypatch, ADAPTIVE, [9, 4], AdaptiveFlow, "step")
    assert stopped == straight


@pytest.mark.parametrize(
    "rows_before_kill",
    # the early kill, often before the first checkpoint, is slow-marked: a run with no
    # checkpoint starting over is also test_ckpt_path_last_without_a_checkpoint_...
    [pytest.param(2, marks=pytest.mark.slow), 25],
)
def test_a_run_killed_at_any_moment_continues_with_ckpt_path_last(rows_before_kill):
    args = [*SMALL_E1, "--trainer.max_steps=800"]
    assert main(["fit", *args, "--run_dir=runs/straight"]) == 0
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "grokkit", "fit", *args, "--run_dir=runs/killed"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = Path("runs/killed/metrics.csv")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") > rows_before_kill:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    summary = Path("runs/killed/summary.json")
    assert not summary.exists() or json.loads(summary.read_text())["status"] == "running"
    assert main(["fit", "--config=runs/killed/config.yaml", "--ckpt_path=last"]) == 0
    assert files(Path("runs/killed")) == files(Path("runs/straight"))
    assert not list(Path("runs/killed/checkpoints").glob("*.tmp"))


def test_ckpt_path_last_without_a_checkpoint_starts_the_run_in_its_directory():
    assert main(["fit", *TINY, "--run_dir=runs/fresh", "--ckpt_path=last"]) == 0
    assert json.loads(Path("runs/fresh/summary.json").read_text())["status"] == "completed"
    assert not Path("runs/fresh-2").exists()


def test_a_completed_run_continues_only_past_a_raised_limit(capsys):
    assert main(["fit", *TINY, "--run_dir=runs/done"]) == 0
    before = {p: p.read_bytes() for p in Path("runs/done").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["fit", "--config=runs/done/config.yaml", "--ckpt_path=last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "completed (60 steps); raise --trainer.max_steps" in err[0]
    assert {p: p.read_bytes() for p in Path("runs/done").rglob("*") if p.is_file()} == before
    more = ["fit", "--config=runs/done/config.yaml", "--ckpt_path=last", "--trainer.max_steps=90"]
    assert main(more) == 0
    assert json.loads(Path("runs/done/summary.json").read_text())["steps"] == 90


def test_ckpt_path_last_refuses_a_directory_that_is_not_a_run(capsys):
    Path("notes").mkdir()
    (Path("notes") / "thesis.tex").write_text("keep me")
    assert main(["fit", "--config", str(QUICKSTART), "--run_dir=notes", "--ckpt_path=last"]) == 2
    assert "is not a grokkit run directory" in capsys.readouterr().err
    assert sorted(p.name for p in Path("notes").iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("command", ["validate", "test"])
def test_evaluating_last_needs_a_checkpoint(capsys, command):
    assert main([command, *TINY, "--run_dir=runs/none", "--ckpt_path=last"]) == 2
    assert "ckpt_path=last: no checkpoint at" in capsys.readouterr().err
    assert main(["fit", *TINY, "--run_dir=runs/some"]) == 0
    assert main([command, "--config=runs/some/config.yaml", "--ckpt_path=last"]) == 0
