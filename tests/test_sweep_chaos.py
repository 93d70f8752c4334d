"""Chaos (issue 12, item 8): a sweep in which one run raises, one diverges, one is SIGKILLed
mid-training and the executor itself is SIGTERMed while a run trains; then the same command is
run again. Every run's status is recorded as it happened, and the rerun retries only what did not
complete, so that every run that can complete does, exactly once.

The runs are real ``grokkit fit`` processes of a tiny E1 (300 steps). tests/chaos_callback.py,
on the runs' PYTHONPATH, picks runs by their learning rate: it makes one raise and holds two
mid-training (at step 50, after a few checkpoints) until the test has killed or stopped them.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import ENV, QUICKSTART

from grokkit.cli import main
from grokkit.rundir import read_metrics, read_summary
from grokkit.sweep import expand, load_sweep

TESTS = Path(__file__).resolve().parent
ENV_CHAOS = {**ENV, "PYTHONPATH": os.pathsep.join([str(TESTS), ENV.get("PYTHONPATH", "")])}
MAX_STEPS = 300
# Each run's role, by its learning rate (the one swept parameter), in the file's order.
LR = {
    "killed": 0.012,  # SIGKILLed by the test while it trains
    "stopped": 0.013,  # training when the executor gets SIGTERM
    "diverges": 1000000.0,
    "raises": 0.011,  # raises at step 50
}


def chaos_sweep(directory: Path, hold: Path, lrs: list[float]) -> Path:
    """A sweep over ``lrs`` of the tiny E1 with the Chaos callback."""
    callback = {
        "class_path": "chaos_callback.Chaos",
        "init_args": {
            "hold_file": str(hold),
            "raise_lr": LR["raises"],
            "hold_lrs": [LR["killed"], LR["stopped"]],
        },
    }
    (directory / "chaos.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    command = ["grokkit", "fit", "--config", str(QUICKSTART), "--config", "chaos.yaml"]
    command += ["--data.d=500", "--data.n_test=200", "--model.eval_points=20"]
    command += [f"--trainer.max_steps={MAX_STEPS}", "${args}"]
    sweep = {
        "name": "chaos",
        "method": "grid",
        "parameters": {"model.lr": {"values": lrs}},
        "command": command,
    }
    path = directory / "chaos_sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def start_sweep(path: Path, *options: str, **kwargs) -> subprocess.Popen:
    """``grokkit sweep`` on ``path`` with tests/ on its runs' PYTHONPATH (the Chaos callback)."""
    argv = [sys.executable, "-m", "grokkit", "sweep", str(path), *options]
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True} | kwargs
    return subprocess.Popen(argv, cwd=path.parent, env=ENV_CHAOS, **output)


def records(out: Path) -> dict[str, dict]:
    path = out / "sweep.json"
    return {r["name"]: r for r in json.loads(path.read_text())["runs"]} if path.exists() else {}


def wait_for(condition: Callable[[], bool], sweep: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 180
    while not condition():
        assert sweep.poll() is None, f"the sweep ended while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pid_with_arg(arg: str) -> int:
    """The process whose command line has ``arg`` (the run's ``--run_dir=...``)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and arg in (proc / "cmdline").read_text().split("\0"):
                return int(proc.name)
        except OSError:  # it ended while we looked
            continue
    raise AssertionError(f"no process with {arg}")


def fits_started(out: Path, name: str) -> list[str]:
    """The commands the sweep started for a run (its log's ``$ `` lines)."""
    log = out / "logs" / f"{name}.log"
    return [line for line in log.read_text().splitlines() if line.startswith("$ ")]


def test_a_chaotic_sweep_is_recorded_and_its_rerun_retries_only_what_did_not_complete(
    tmp_path, monkeypatch, capsys
):
    hold = tmp_path / "hold"
    hold.touch()
    path = chaos_sweep(tmp_path, hold, list(LR.values()))
    name = dict(zip(LR, (run.name for run in expand(load_sweep(path))), strict=True))
    out = tmp_path / "runs" / "chaos"
    sweep = start_sweep(path, "--workers", "4")
    try:
        held = Path(f"{hold}.{LR['killed']:g}")
        wait_for(held.exists, sweep, "the run to kill to train past step 50")
        os.kill(pid_with_arg(f"--run_dir=runs/chaos/{name['killed']}"), signal.SIGKILL)
        ended = {"killed": "interrupted", "diverges": "diverged", "raises": "failed"}

        def all_but_one_ended() -> bool:
            statuses = {role: records(out)[name[role]]["status"] for role in ended}
            return statuses == ended and Path(f"{hold}.{LR['stopped']:g}").exists()

        wait_for(all_but_one_ended, sweep, "every run but the held one to end")
        sweep.send_signal(signal.SIGTERM)
        output, _ = sweep.communicate(timeout=120)
    except BaseException:
        sweep.kill()
        hold.unlink()  # so that a held run, orphaned, goes on to its end
        raise
    assert sweep.returncode == 130, output

    # First invocation: each way of ending recorded as what it is.
    first = records(out)
    assert {role: first[name[role]]["status"] for role in LR} == {
        "killed": "interrupted",  # a signal's death: resumable, not failed
        "stopped": "interrupted",  # stopped by the executor's SIGTERM, after checkpointing
        "diverges": "diverged",
        "raises": "failed",
    }
    assert {role: first[name[role]]["exit_code"] for role in LR} == {
        "killed": -signal.SIGKILL,
        "stopped": 130,
        "diverges": 3,
        "raises": 1,
    }
    # The killed run's summary is the one it kept current while training.
    assert read_summary(out / name["killed"])["status"] == "running"
    for role in ("stopped", "diverges", "raises"):
        assert read_summary(out / name[role])["status"] == first[name[role]]["status"]
    error_log = (out / name["raises"] / "error.log").read_text()
    assert "RuntimeError: chaos: the run with lr = 0.011 raises" in error_log

    # The rerun (the same command, here in this process) with nothing held any more: it resumes
    # the killed and the stopped run in their directories (--ckpt_path=last), keeps the diverged
    # one, and restarts the failed one afresh (its old directory set aside), which fails again:
    # exit 1.
    hold.unlink()
    monkeypatch.setenv("PYTHONPATH", ENV_CHAOS["PYTHONPATH"])
    assert main(["sweep", str(path), "--workers", "3"]) == 1
    assert "4 runs, 1 already done, 3 to run" in capsys.readouterr().out
    final = records(out)
    expected = {
        "killed": ("completed", 2),
        "stopped": ("completed", 2),
        "diverges": ("diverged", 1),
        "raises": ("failed", 2),
    }
    assert {role: (final[name[role]]["status"], final[name[role]]["attempts"]) for role in LR} == (
        expected
    )
    for role, (_, attempts) in expected.items():
        started = fits_started(out, name[role])
        assert len(started) == attempts, started
        assert started[-1].endswith("--ckpt_path=last") == (role in ("killed", "stopped"))
        assert read_summary(out / name[role])["status"] == final[name[role]]["status"]
    for role in ("killed", "stopped"):  # each trained once: no step twice, every step
        steps = read_metrics(out / name[role] / "metrics.csv")["step"]
        assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), steps
        assert steps[-1] == MAX_STEPS
        assert read_summary(out / name[role])["steps"] == MAX_STEPS
    assert (out / f"{name['raises']}.attempt-1" / "error.log").is_file()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        [*name.values(), f"{name['raises']}.attempt-1", "claims", "logs"]
    )  # no run trained twice into a "-2" directory


@pytest.mark.slow
def test_a_run_that_outlives_its_killed_executor_is_waited_for_not_trained_again(tmp_path):
    """SIGKILL the executor while its run trains: the run goes on (its own session) and keeps
    its claim, so a second executor waits for it and records its outcome without a second fit."""
    hold = tmp_path / "hold"
    hold.touch()
    path = chaos_sweep(tmp_path, hold, [LR["killed"]])
    out = tmp_path / "runs" / "chaos"
    second_out = tmp_path / "second.out"

    def second_waits() -> bool:
        return "waiting for 1 run(s)" in second_out.read_text()

    first = start_sweep(path)
    try:
        wait_for(Path(f"{hold}.{LR['killed']:g}").exists, first, "the run to train past step 50")
        first.kill()
        first.communicate(timeout=60)
        with open(second_out, "w") as log:
            second = start_sweep(path, stdout=log)
            wait_for(second_waits, second, "the second executor to wait for the run")
    finally:
        hold.unlink()
    assert second.wait(timeout=120) == 0
    output = second_out.read_text()
    (run,) = records(out)
    assert "completed (by another grokkit sweep)" in output and "1 completed" in output, output
    assert (records(out)[run]["status"], records(out)[run]["attempts"]) == ("completed", 1)
    assert len(fits_started(out, run)) == 1
