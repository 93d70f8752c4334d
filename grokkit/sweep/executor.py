"""``grokkit sweep``: run a sweep's runs on this machine, N worker processes at a time, no server.

Each run is its own ``grokkit fit`` process writing ``<out>/<run name>/`` (output in
``<out>/logs/<run name>.log``). ``<out>/sweep.json`` records every run's parameters, command,
status, exit code, device and wall time; it is rewritten atomically after each change. A rerun
skips completed and diverged runs, resumes interrupted ones from their checkpoint and restarts the
rest (a restarted run's old directory is kept as ``<name>.attempt-K``).
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokkit.console import say
from grokkit.outcome import EXIT_CODES, FINAL, status_of_exit, status_tally
from grokkit.rundir import read_summary, write_json_atomic
from grokkit.signals import on_stop_signals, signal_name
from grokkit.sweep.spec import SweepRun, SweepSpec

POLL_SECONDS = 0.2


def worker_env(worker: int, workers: int, gpus: list[str], base: dict[str, str]) -> dict[str, str]:
    """Environment of worker ``worker``: its GPU (workers are dealt round-robin over ``gpus``,
    several per GPU allowed) and its share of CPU threads (PyTorch processes that each use every
    core slow each other down many times over)."""
    env = dict(base)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[worker % len(gpus)]
    if "OMP_NUM_THREADS" not in base:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class RunRecord:
    """What sweep.json keeps about one run."""

    name: str
    params: dict[str, Any]
    command: list[str] = field(default_factory=list)
    status: str = "pending"
    exit_code: int | None = None
    seconds: float | None = None
    gpu: str | None = None
    attempts: int = 0


@dataclass
class _Active:
    record: RunRecord
    process: subprocess.Popen
    worker: int
    started: float
    log: Any
    signals_sent: int = 0


class SweepExecutor:
    """Runs ``runs`` of ``spec`` under ``out`` with ``workers`` processes over ``gpus``."""

    def __init__(
        self,
        spec: SweepSpec,
        runs: list[SweepRun],
        out: Path,
        workers: int = 1,
        gpus: list[str] | None = None,
    ) -> None:
        self.spec, self.runs, self.out = spec, runs, out
        self.workers, self.gpus = workers, gpus or []
        self.records = {run.name: RunRecord(run.name, run.params) for run in runs}
        self.stopping = 0  # 1 after the first Ctrl-C/SIGTERM, 2 after the second

    # --- state -------------------------------------------------------------------------------
    def _load_previous(self) -> None:
        """Carry over attempt counts and statuses from an earlier invocation."""
        manifest = self.out / "sweep.json"
        if manifest.exists():
            for old in json.loads(manifest.read_text()).get("runs", []):
                record = self.records.get(old["name"])
                if record is not None:
                    record.attempts = old.get("attempts", 0)
                    record.status, record.exit_code = old["status"], old.get("exit_code")
                    record.seconds, record.gpu = old.get("seconds"), old.get("gpu")
        for record in self.records.values():
            summary = read_summary(self.out / record.name)
            if summary:
                record.status = summary["status"]
            elif record.status == "running":  # the executor itself was killed
                record.status = "interrupted"

    def _save(self) -> None:
        write_json_atomic(
            self.out / "sweep.json",
            {
                "name": self.spec.name,
                "sweep_file": str(self.spec.path),
                "method": self.spec.method,
                "metric": self.spec.metric,
                "workers": self.workers,
                "gpus": self.gpus,
                "runs": [vars(r) for r in self.records.values()],
            },
        )

    # --- launching ---------------------------------------------------------------------------
    def _command(self, run: SweepRun) -> list[str]:
        """The file's command with this Python for ``grokkit``, in the run's own directory;
        an interrupted run resumes from its last checkpoint."""
        argv = self.spec.command_for(run, sys.executable)
        if Path(argv[0]).name == "grokkit":
            argv = [sys.executable, "-m", "grokkit", *argv[1:]]
        run_dir = self.out / run.name
        argv += [f"--run_dir={run_dir}", f"--wandb.group={self.spec.name}"]
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        if self.records[run.name].status == "interrupted" and checkpoint.exists():
            argv.append(f"--ckpt_path={checkpoint}")
        elif run_dir.exists():
            self._set_aside(run_dir)
        return argv

    def _set_aside(self, run_dir: Path) -> None:
        """Keep a failed attempt's files (never delete data) out of the way of the rerun."""
        k = 1
        while run_dir.with_name(f"{run_dir.name}.attempt-{k}").exists():
            k += 1
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.attempt-{k}"))

    def _start(self, run: SweepRun, worker: int) -> _Active:
        record = self.records[run.name]
        record.command = self._command(run)
        record.status, record.attempts = "running", record.attempts + 1
        env = worker_env(worker, self.workers, self.gpus, dict(os.environ))
        record.gpu = env.get("CUDA_VISIBLE_DEVICES") if self.gpus else None
        (self.out / "logs").mkdir(exist_ok=True)
        log = open(self.out / "logs" / f"{run.name}.log", "a")  # noqa: SIM115 (closed in _finish)
        log.write(f"$ {' '.join(record.command)}\n")
        log.flush()
        # Own session: a terminal Ctrl-C reaches only the executor, which forwards one SIGTERM.
        process = subprocess.Popen(
            record.command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return _Active(record, process, worker, time.monotonic(), log)

    def _finish(self, active: _Active, code: int) -> None:
        active.log.close()
        record = active.record
        record.exit_code, record.seconds = code, round(time.monotonic() - active.started, 1)
        summary = read_summary(self.out / record.name)
        status = status_of_exit(code)
        if summary and status != "bad_input":
            status = summary["status"]
        record.status = "failed" if status == "bad_input" else status

    # --- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run every run not already done; exits as interrupted (130) if stopped, failed (1)
        if any run failed, else completed (0) (a diverged run is an outcome, in the tally)."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_previous()
        todo = [r for r in self.runs if self.records[r.name].status not in FINAL]
        done_before = len(self.runs) - len(todo)
        say(
            f"{len(self.runs)} runs, {done_before} already done, "
            f"{len(todo)} to run with {self.workers} worker(s)"
            + (f" on GPUs {','.join(self.gpus)}" if self.gpus else "")
            + f"; results in {self.out}",
            who=f"grokkit sweep {self.spec.name}",
        )
        self._save()
        active: list[_Active] = []
        started_at, durations = time.monotonic(), []
        with on_stop_signals(self._request_stop):
            while (todo and not self.stopping) or active:
                free = sorted(set(range(self.workers)) - {a.worker for a in active})
                while free and todo and not self.stopping:
                    active.append(self._start(todo.pop(0), free.pop(0)))
                    self._save()
                time.sleep(POLL_SECONDS)
                finished = [a for a in active if a.process.poll() is not None]
                active = [a for a in active if a not in finished]
                for a in finished:
                    self._finish(a, a.process.returncode)
                    durations.append(a.record.seconds or 0.0)
                    self._save()
                    self._progress(a.record, len(todo), len(active), started_at, durations)
                self._forward_stop(active)
        return self._conclude()

    def _request_stop(self, signum: int) -> None:
        self.stopping += 1
        what = "stopping the running runs (they checkpoint)" if self.stopping == 1 else "killing"
        say(f"{signal_name(signum)}: {what}", who="grokkit sweep", to_stderr=True)

    def _forward_stop(self, active: list[_Active]) -> None:
        """First request: one SIGTERM per run (it stops after its step, writes checkpoint and
        summary, exits 130). Second: SIGINT, which interrupts a run at once."""
        for a in active:
            if self.stopping > a.signals_sent and a.process.poll() is None:
                a.process.send_signal(signal.SIGTERM if a.signals_sent == 0 else signal.SIGINT)
                a.signals_sent += 1

    def _progress(
        self, record: RunRecord, pending: int, running: int, started_at: float, durations: list
    ) -> None:
        finished = sum(r.status in (*FINAL, "failed") for r in self.records.values())
        elapsed = time.monotonic() - started_at
        left = sum(durations) / len(durations) * (pending + running) / self.workers
        say(
            f"[{finished}/{len(self.runs)}] {record.name}: {record.status} "
            f"(exit {record.exit_code}, {record.seconds:.0f} s) | {running} running, "
            f"{pending} pending | elapsed {_clock(elapsed)}, ~{_clock(left)} left",
            who="grokkit sweep",
        )

    def _conclude(self) -> int:
        counts = Counter(record.status for record in self.records.values())
        say(
            f"{status_tally(counts.elements())}; table and figures: grokkit report {self.out}",
            who=f"grokkit sweep {self.spec.name}",
        )
        if self.stopping or counts.get("interrupted") or counts.get("pending"):
            say("rerun the same command to resume", who="grokkit sweep")
            return EXIT_CODES["interrupted"]
        return EXIT_CODES["failed"] if counts.get("failed") else EXIT_CODES["completed"]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
