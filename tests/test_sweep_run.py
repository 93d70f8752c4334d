"""The serverless executor (`grokkit sweep`) and the agent launcher (`grokkit agent`), on small
real sweeps: each run is a real `grokkit fit` process (the shared finished sweep and its helpers
are in conftest)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ENV, TINY, grokkit, sweep_file

from grokkit.rundir import write_summary
from grokkit.sweep import expand, load_sweep
from grokkit.sweep.executor import SweepExecutor, try_claim, worker_env


def manifest(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}


def test_sweep_runs_every_grid_point_in_its_own_directory(finished_sweep):
    out, result = finished_sweep
    assert result.returncode == 0, result.stderr[-2000:]
    records = manifest(out)
    assert len(records) == 4
    assert {r["status"] for r in records.values()} == {"completed"}
    assert {r["gpu"] for r in records.values()} == {"3", "5"}
    for name, record in records.items():
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["grokking_step"] is not None
        assert f"--run_dir=runs/small/{name}" in record["command"]
        assert (out / "logs" / f"{name}.log").exists()
    assert "[4/4]" in result.stdout and "left" in result.stdout
    config = yaml.safe_load(
        (out / "001-alpha=16_weight_decay=0.1_max_steps=1500" / "config.yaml").read_text()
    )
    assert (config["model"]["alpha"], config["model"]["weight_decay"]) == (16, 0.1)


def test_rerun_of_a_finished_sweep_runs_nothing(finished_sweep):
    out, _ = finished_sweep
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    result = grokkit("sweep", str(out.parent.parent / "small.yaml"), cwd=out.parent.parent)
    assert result.returncode == 0
    assert "4 already done, 0 to run" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == before


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path):
    # max_steps = 0 passes the parser (an int) and fails in `grokkit fit` itself.
    path = sweep_file(tmp_path, "[16]", "[0, 300]", name="failing", decays="[0.05]")
    result = grokkit("sweep", str(path), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1
    records = manifest(tmp_path / "runs" / "failing")
    failed = [r for r in records.values() if r["params"]["trainer.max_steps"] == 0]
    done = [r for r in records.values() if r["params"]["trainer.max_steps"] == 300]
    assert {r["status"] for r in failed} == {"failed"} and {r["exit_code"] for r in failed} == {2}
    assert {r["status"] for r in done} == {"completed"}
    log = (tmp_path / "runs" / "failing" / "logs" / f"{failed[0]['name']}.log").read_text()
    assert "trainer.max_steps must be a positive number" in log
    assert "1 completed, 1 failed" in result.stdout


@pytest.mark.slow  # (tests/test_sweep_chaos.py stops and resumes a sweep in the default suite)
def test_interrupted_sweep_resumes_only_the_rest(tmp_path):
    """Ctrl-C while the second run trains: it checkpoints and the sweep exits 130; the rerun
    skips the first run, resumes the second from its checkpoint and runs the third."""
    path = sweep_file(tmp_path, "[16]", "[300, 4000, 400]", name="resume", decays="[0.05]")
    out = tmp_path / "runs" / "resume"
    first, second_run = [r.name for r in expand(load_sweep(path))][:2]
    assert second_run.endswith("max_steps=4000")
    sweep = subprocess.Popen(
        [sys.executable, "-m", "grokkit", "sweep", str(path)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    second = out / second_run / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (second.exists() and len(second.read_text().splitlines()) > 20):
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stdout.read()
        time.sleep(0.1)
    sweep.send_signal(signal.SIGINT)
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, output
    records = manifest(out)
    assert [r["status"] for r in records.values()] == ["completed", "interrupted", "pending"]
    interrupted = json.loads((second.parent / "summary.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["steps"] < 4000
    first_summary = (out / first / "summary.json").stat().st_mtime_ns

    result = grokkit("sweep", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 already done, 2 to run" in result.stdout
    records = manifest(out)
    assert {r["status"] for r in records.values()} == {"completed"}
    resumed = records[second_run]
    assert resumed["attempts"] == 2
    assert resumed["command"][-1] == "--ckpt_path=last"  # the fit finds its own checkpoint
    assert json.loads((second.parent / "summary.json").read_text())["steps"] == 4000
    assert (out / first / "summary.json").stat().st_mtime_ns == first_summary
    assert records[first]["attempts"] == 1


def test_restarted_run_keeps_the_old_attempt(tmp_path):
    """A run that failed without a usable checkpoint restarts from scratch; its old directory
    is set aside, not deleted."""
    spec = load_sweep(sweep_file(tmp_path, "[16]", "[300]"))
    runs = expand(spec)
    out = tmp_path / "runs" / "small"
    old = out / runs[0].name
    (old / "checkpoints").mkdir(parents=True)
    (old / "metrics.csv").write_text("step\n1\n")
    (old / "summary.json").write_text('{"status": "failed"}')
    executor = SweepExecutor(spec, runs, out)
    executor._load_previous()
    command = executor._command(runs[0])
    assert not any(a.startswith("--ckpt_path") for a in command)
    assert (out / f"{runs[0].name}.attempt-1" / "metrics.csv").read_text() == "step\n1\n"
    assert not old.exists()


def tiny_sweep(directory: Path, name: str) -> Path:
    """Two runs (two λ) of a tiny E1 without callbacks: the executors are under test."""
    command = ["grokkit", "fit", *TINY, "--trainer.callbacks=[]", "${args}"]
    sweep = {
        "name": name,
        "method": "grid",
        "parameters": {
            "model.alpha": {"values": [16]},
            "model.weight_decay": {"values": [0.05, 0.1]},
        },
        "command": command,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def fits_started(out: Path, name: str) -> int:
    """How many fits the sweep started for a run (its log's ``$ `` command lines)."""
    log = (out / "logs" / f"{name}.log").read_text()
    return sum(line.startswith("$ ") for line in log.splitlines())


def test_two_executors_started_at_once_share_the_runs(tmp_path):
    """Started twice on one sweep, the executors train each run once between them (no "-2"
    directory), keep one consistent sweep.json and each wait for the whole sweep to end."""
    path = tiny_sweep(tmp_path, "twice")
    argv = [sys.executable, "-m", "grokkit", "sweep", str(path)]
    sweeps = [
        subprocess.Popen(
            argv, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [sweep.communicate(timeout=300)[0] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], outputs
    out = tmp_path / "runs" / "twice"
    records = manifest(out)
    assert len(records) == 2
    assert {(r["status"], r["attempts"]) for r in records.values()} == {("completed", 1)}
    assert {name: fits_started(out, name) for name in records} == dict.fromkeys(records, 1)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        [*records, "claims", "logs"]
    )
    assert all("2 completed" in output for output in outputs), outputs


def test_a_claimed_run_is_left_to_its_holder_and_taken_over_once_it_is_gone(tmp_path):
    """A run another executor holds is not started. Once free, a run whose summary still says
    ``running`` (its process died) continues with --ckpt_path=last, and one that the other
    executor was attempting when this one started, and that failed, is not retried."""
    spec = load_sweep(sweep_file(tmp_path, "[16]", "[300, 400]", decays="[0.05]"))
    runs = expand(spec)
    out = tmp_path / "runs" / "small"
    killed, failing = (out / run.name for run in runs)
    for run_dir in (killed, failing):
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text("seed_everything: 0\n")
        write_summary(run_dir, {"status": "running"})
    other = {"name": runs[1].name, "params": runs[1].params, "status": "running", "attempts": 1}
    (out / "sweep.json").write_text(json.dumps({"runs": [other]}))
    elsewhere = try_claim(out / "claims" / f"{runs[1].name}.lock")  # the other executor's
    executor = SweepExecutor(spec, runs, out)
    executor._load_previous()
    assert executor._claim(runs[1]) == "held"
    assert executor._claim(runs[0]) == "start"
    assert executor.records[runs[0].name].status == "interrupted"
    assert executor._command(runs[0])[-1] == "--ckpt_path=last" and killed.is_dir()
    write_summary(failing, {"status": "failed"})  # the other executor's attempt ends
    (out / "sweep.json").write_text(json.dumps({"runs": [{**other, "status": "failed"}]}))
    elsewhere.close()
    assert executor._claim(runs[1]) == "done"
    assert executor.records[runs[1].name].status == "failed"
    assert manifest(out)[runs[1].name]["status"] == "failed"
    assert manifest(out)[runs[0].name]["status"] == "interrupted"


def test_a_run_keeps_its_claim_when_the_executor_dies(tmp_path, monkeypatch):
    """The claim's locked file is inherited by the run's process: killing the executor (here:
    closing its copy) does not free a run that still trains; its end does."""
    spec = load_sweep(sweep_file(tmp_path, "[16]", "[300]"))
    runs = expand(spec)
    out = tmp_path / "runs" / "small"
    executor = SweepExecutor(spec, runs, out)
    executor._load_previous()
    monkeypatch.setattr(executor, "_command", lambda run: ["sleep", "60"])
    assert executor._claim(runs[0]) == "start"
    active = executor._start(runs[0], worker=0)
    executor.claims.pop(runs[0].name).close()
    lock = out / "claims" / f"{runs[0].name}.lock"
    assert try_claim(lock) is None
    active.process.kill()
    assert active.process.wait() == -signal.SIGKILL
    active.log.close()
    assert try_claim(lock) is not None


def test_workers_are_dealt_over_the_gpus_with_a_share_of_the_cores():
    gpus = ["0", "2", "7"]
    envs = [worker_env(w, 4, gpus, {"PATH": "/bin"}) for w in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "2", "7", "0"]
    assert all(e["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 4)) for e in envs)
    assert worker_env(0, 2, [], {"OMP_NUM_THREADS": "3"}) == {
        "OMP_NUM_THREADS": "3",
        "PYTHONUNBUFFERED": "1",
    }


FAKE_WANDB = """#!/bin/sh
echo "$CUDA_VISIBLE_DEVICES $*" >> "$AGENT_LOG"
if [ -n "$FAKE_WAIT" ]; then
  trap 'echo "TERM $CUDA_VISIBLE_DEVICES" >> "$AGENT_LOG"; exit 130' TERM
  while true; do sleep 0.1; done
fi
"""


@pytest.fixture
def fake_wandb(tmp_path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "wandb").write_text(FAKE_WANDB)
    (bin_dir / "wandb").chmod(0o755)
    return {
        **ENV,
        "PATH": f"{bin_dir}{os.pathsep}{ENV['PATH']}",
        "AGENT_LOG": str(tmp_path / "agents.log"),
    }


def test_agent_starts_one_forwarding_wandb_agent_per_gpu(tmp_path, fake_wandb):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grokkit",
            "agent",
            "ent/proj/abc123",
            "--gpus",
            "0,1,3",
            "--count",
            "5",
        ],
        env=fake_wandb,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = sorted((tmp_path / "agents.log").read_text().splitlines())
    assert lines == [f"{g} agent --forward-signals --count 5 ent/proj/abc123" for g in "013"]


def test_agent_passes_sigterm_to_every_agent_once(tmp_path, fake_wandb):
    env = {**fake_wandb, "FAKE_WAIT": "1"}
    agents = subprocess.Popen(
        [sys.executable, "-m", "grokkit", "agent", "abc123", "--gpus", "0,1"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "agents.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and len(log.read_text().splitlines()) == 2):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    agents.send_signal(signal.SIGTERM)
    agents.communicate(timeout=30)
    assert agents.returncode == 130
    assert sorted(line for line in log.read_text().splitlines() if line.startswith("TERM")) == [
        "TERM 0",
        "TERM 1",
    ]
