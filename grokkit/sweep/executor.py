"""``grokkit sweep``: run a sweep's runs on this machine, N worker processes at a time, no server.

Each run is its own ``grokkit fit`` process writing ``<out>/<run name>/`` (output in
``<out>/logs/<run name>.log``). ``<out>/sweep.json`` records every run's parameters, command,
status, exit code, device and wall time; it is rewritten atomically after each change.

A rerun skips completed and diverged runs, continues interrupted ones in their own directory
with ``--ckpt_path=last`` (from their last checkpoint, or from the start if they had none), and
restarts the rest (a failed run, a pending one), setting a restarted run's old directory aside
as ``<name>.attempt-K``. A run whose process is gone without an end counts as interrupted: one
killed by a signal (SIGKILL from the OOM killer, see grokkit.outcome), and one whose summary.json
still says ``running`` because the executor or the machine died.

Executors started twice on one sweep share its runs instead of each training all of them. An
executor claims a run by an exclusive flock on ``<out>/claims/<run>.lock`` and hands the locked
file on to the run's process, so the claim lasts while either lives and ends with both, also
after a SIGKILL: there are no stale claims, and a fit that outlives a killed executor is never
started a second time. Holding the claim, it rereads the run's state (another executor may have
just finished it) before starting it. A run another executor holds is waited for, so every
executor's tally and exit status cover the whole sweep: its outcome is adopted (a run another
executor attempted during this one's invocation and that failed is not tried again here).
sweep.json is written under ``sweep.json.lock`` as read-merge-write: an executor writes the
records of the runs it holds and keeps every other record as it is on disk. (flock: one machine,
or a shared file system whose locks work across machines.)
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from grokkit.console import say
from grokkit.outcome import EXIT_CODES, FINAL, status_of_run, status_tally
from grokkit.rundir import CONFIG, read_summary, write_json_atomic
from grokkit.signals import on_stop_signals, signal_name
from grokkit.sweep.spec import SweepRun, SweepSpec

POLL_SECONDS = 0.2
MANIFEST = "sweep.json"
CLAIMS = "claims"


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


def try_claim(path: Path) -> IO[str] | None:
    """``path`` opened and exclusively flocked, or None when another process holds it. The lock
    belongs to the open file: it is released when every process holding the file has closed it
    (or died)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 (kept open as the claim; closed by the caller)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")  # for a person looking: who claimed it
    handle.flush()
    return handle


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` for the block (waiting for it)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # released when the file closes


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

    def take(self, old: dict[str, Any]) -> None:
        """Take over what sweep.json on disk says (an earlier invocation, another executor)."""
        self.command = old.get("command") or self.command
        self.status, self.exit_code = old.get("status", self.status), old.get("exit_code")
        self.seconds, self.gpu = old.get("seconds"), old.get("gpu")
        self.attempts = old.get("attempts", 0)


@dataclass
class _Active:
    records: list[RunRecord]  # one run, or the members of a batch (--vectorize)
    process: subprocess.Popen
    worker: int
    started: float
    log: Any
    result: Path | None = None  # a batch's members' exit codes (grokkit ensemble)
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
        batches: list[list[SweepRun]] | None = None,
    ) -> None:
        self.spec, self.runs, self.out = spec, runs, out
        self.workers, self.gpus = workers, gpus or []
        # --vectorize: the runs in batches, each batch one process (grokkit.sweep.vectorize)
        self.batches = batches or [[run] for run in runs]
        self.records = {run.name: RunRecord(run.name, run.params) for run in runs}
        self.claims: dict[str, IO[str]] = {}  # the runs this executor holds
        self.attempts_at_start: dict[str, int] = {}
        self.stopping = 0  # 1 after the first Ctrl-C/SIGTERM, 2 after the second
        self.waiting = False  # said that it waits for runs another executor holds

    # --- state -------------------------------------------------------------------------------
    def _on_disk(self) -> dict[str, dict[str, Any]]:
        """sweep.json's records by run name ({} before the first write)."""
        path = self.out / MANIFEST
        runs = json.loads(path.read_text()).get("runs", []) if path.exists() else []
        return {r["name"]: r for r in runs}

    def _load_previous(self) -> None:
        """Take over sweep.json's records and settle, from its directory, the status of every
        run no process holds (a run another executor holds stays as that one records it)."""
        for name, old in self._on_disk().items():
            if name in self.records:
                self.records[name].take(old)
        for name, record in self.records.items():
            self.attempts_at_start[name] = record.attempts
            claim = try_claim(self._claim_path(name))
            if claim is not None:
                self.claims[name] = claim
                record.status = self._settled(record)
            elif record.status == "running":  # another executor's attempt, under way: its
                self.attempts_at_start[name] -= 1  # outcome is this invocation's too
        self._save()  # held briefly, so that the settled statuses are written as their owner
        for name in list(self.claims):
            self._release(name)

    def _settled(self, record: RunRecord) -> str:
        """The status of a run no process holds: its summary.json's, but a run that is still
        ``running`` there or in sweep.json is gone without an end: interrupted."""
        summary = read_summary(self.out / record.name).get("status")
        if summary and summary != "running":
            return summary
        return "interrupted" if "running" in (summary, record.status) else record.status

    def _save(self) -> None:
        """Write sweep.json as read-merge-write under its lock: the records of the runs this
        executor holds are its own; every other run's record is taken from disk (another executor
        may hold that run), so concurrent executors never undo each other's writes."""
        with locked(self.out / (MANIFEST + ".lock")):
            on_disk = self._on_disk()
            for name, record in self.records.items():
                if name not in self.claims and name in on_disk:
                    record.take(on_disk[name])
            others = [old for name, old in on_disk.items() if name not in self.records]
            write_json_atomic(
                self.out / MANIFEST,
                {
                    "name": self.spec.name,
                    "sweep_file": str(self.spec.path),
                    "method": self.spec.method,
                    "metric": self.spec.metric,
                    "workers": self.workers,
                    "gpus": self.gpus,
                    "runs": [vars(r) for r in self.records.values()] + others,
                },
            )

    # --- claims ------------------------------------------------------------------------------
    def _claim_path(self, name: str) -> Path:
        return self.out / CLAIMS / f"{name}.lock"

    def _release(self, name: str) -> None:
        self.claims.pop(name).close()

    def _claim(self, run: SweepRun) -> str:
        """Claim ``run`` if no other process holds it: ``"start"`` (claimed, still to do),
        ``"held"`` (another executor runs it: waited for) or ``"done"`` (another executor ended
        it since: completed or diverged, or failed in an attempt made since this invocation
        began; its record is adopted)."""
        claim = try_claim(self._claim_path(run.name))
        if claim is None:
            return "held"
        self.claims[run.name] = claim
        record = self.records[run.name]
        old = self._on_disk().get(run.name)
        if old is not None:
            record.take(old)
        record.status = self._settled(record)
        retried = record.attempts > self.attempts_at_start[run.name]
        if record.status in FINAL or (retried and record.status == "failed"):
            self._save()
            self._release(run.name)
            say(f"{run.name}: {record.status} (by another grokkit sweep)", who="grokkit sweep")
            return "done"
        return "start"

    # --- launching ---------------------------------------------------------------------------
    def _command(self, run: SweepRun) -> list[str]:
        """The file's command with this Python for ``grokkit``, in the run's own directory;
        an interrupted run continues there (``--ckpt_path=last``: the fit finds its last
        checkpoint, or starts over in the directory when it has none)."""
        argv = self.spec.command_for(run, sys.executable)
        if Path(argv[0]).name == "grokkit":
            argv = [sys.executable, "-m", "grokkit", *argv[1:]]
        run_dir = self.out / run.name
        argv += [f"--run_dir={run_dir}", f"--wandb.group={self.spec.name}"]
        if self.records[run.name].status == "interrupted" and (run_dir / CONFIG).is_file():
            argv.append("--ckpt_path=last")
        elif run_dir.exists():
            self._set_aside(run_dir)
        return argv

    def _set_aside(self, run_dir: Path) -> None:
        """Keep a failed attempt's files (never delete data) out of the way of the rerun."""
        k = 1
        while run_dir.with_name(f"{run_dir.name}.attempt-{k}").exists():
            k += 1
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.attempt-{k}"))

    def _start(self, runs: SweepRun | list[SweepRun], worker: int) -> _Active:
        """Start one run, or a batch of runs as one ``grokkit ensemble`` process."""
        runs = [runs] if isinstance(runs, SweepRun) else runs
        records = [self.records[run.name] for run in runs]
        env = worker_env(worker, self.workers, self.gpus, dict(os.environ))
        (self.out / "logs").mkdir(exist_ok=True)
        for run, record in zip(runs, records, strict=True):
            record.command = self._command(run)
            record.status, record.attempts = "running", record.attempts + 1
            record.gpu = env.get("CUDA_VISIBLE_DEVICES") if self.gpus else None
        command, result = records[0].command, None
        name = runs[0].name
        if len(runs) > 1:  # one process for the batch; each member's command runs it alone
            name = f"batch-{runs[0].name}+{len(runs) - 1}"
            command, result = ensemble_command(self.out, name, records)
            for record in records:
                with open(self.out / "logs" / f"{record.name}.log", "a") as member_log:
                    member_log.write(f"$ {' '.join(record.command)}  (in {name})\n")
        log = open(self.out / "logs" / f"{name}.log", "a")  # noqa: SIM115 (closed in _finish)
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        # Own session: a terminal Ctrl-C reaches only the executor, which forwards one SIGTERM.
        # The run inherits the claim: it stays claimed while the run lives, even if we die.
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(self.claims[run.name].fileno() for run in runs),
        )
        return _Active(records, process, worker, time.monotonic(), log, result)

    def _finish(self, active: _Active, code: int) -> None:
        """Record how each run ended (a run killed by a signal: interrupted, see outcome); a
        batch's members each by their own exit code, when the batch process wrote them."""
        active.log.close()
        codes = [code] * len(active.records)
        if active.result is not None and active.result.is_file():
            codes = json.loads(active.result.read_text())["exit_codes"]
        for record, member_code in zip(active.records, codes, strict=True):
            record.exit_code = member_code
            record.seconds = round(time.monotonic() - active.started, 1)
            summary = read_summary(self.out / record.name).get("status")
            record.status = status_of_run(member_code, summary)

    # --- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run every run not already done; exits as interrupted (130) if stopped, failed (1)
        if any run failed, else completed (0) (a diverged run is an outcome, in the tally)."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_previous()
        todo = [
            [r for r in batch if self.records[r.name].status not in FINAL] for batch in self.batches
        ]
        todo = [batch for batch in todo if batch]
        done_before = len(self.runs) - sum(map(len, todo))
        batched = len(todo) < sum(map(len, todo))
        say(
            f"{len(self.runs)} runs, {done_before} already done, "
            f"{sum(map(len, todo))} to run"
            + (f" in {len(todo)} batch(es)" if batched else "")
            + f" with {self.workers} worker(s)"
            + (f" on GPUs {','.join(self.gpus)}" if self.gpus else "")
            + f"; results in {self.out}",
            who=f"grokkit sweep {self.spec.name}",
        )
        active: list[_Active] = []
        started_at, durations = time.monotonic(), []
        with on_stop_signals(self._request_stop):
            while (todo and not self.stopping) or active:
                self._launch(todo, active)
                time.sleep(POLL_SECONDS)
                finished = [a for a in active if a.process.poll() is not None]
                active = [a for a in active if a not in finished]
                for a in finished:
                    self._finish(a, a.process.returncode)
                    self._save()
                    for record in a.records:
                        self._release(record.name)
                        durations.append((a.records[0].seconds or 0.0) / len(a.records))
                        pending = sum(map(len, todo))
                        running = sum(len(b.records) for b in active)
                        self._progress(record, pending, running, started_at, durations)
                self._forward_stop(active)
        self._save()  # the latest records of the runs other executors held
        return self._conclude()

    def _launch(self, todo: list[list[SweepRun]], active: list[_Active]) -> None:
        """Start the first runs (batches) of ``todo`` this executor can claim on its free
        workers; runs another executor holds stay in ``todo`` (tried again at the next poll)."""
        free = sorted(set(range(self.workers)) - {a.worker for a in active})
        for batch in list(todo):
            if not free or self.stopping:
                break
            verdicts = {run.name: self._claim(run) for run in batch}
            todo[todo.index(batch)] = [r for r in batch if verdicts[r.name] == "held"]
            start = [r for r in batch if verdicts[r.name] == "start"]
            if start:
                active.append(self._start(start, free.pop(0)))
                self._save()
        todo[:] = [batch for batch in todo if batch]
        if todo and not active and not self.waiting and not self.stopping:
            self.waiting = True
            say(
                f"waiting for {sum(map(len, todo))} run(s) another grokkit sweep is running",
                who="grokkit sweep",
            )

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
        unfinished = ("interrupted", "pending", "running")
        if self.stopping or any(counts.get(status) for status in unfinished):
            say("rerun the same command to resume", who="grokkit sweep")
            return EXIT_CODES["interrupted"]
        return EXIT_CODES["failed"] if counts.get("failed") else EXIT_CODES["completed"]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def ensemble_command(out: Path, name: str, records: list[RunRecord]) -> tuple[list[str], Path]:
    """The ``grokkit ensemble`` command for a batch of runs (each member's ``grokkit fit``
    arguments and log, from its own command) and the file its exit codes will be in."""
    batches = out / "batches"
    batches.mkdir(exist_ok=True)
    result = batches / f"{name}.result.json"
    result.unlink(missing_ok=True)
    members = [
        {
            "name": record.name,
            "args": record.command[record.command.index("fit") + 1 :],
            "log": str(out / "logs" / f"{record.name}.log"),
        }
        for record in records
    ]
    write_json_atomic(batches / f"{name}.json", {"members": members, "result": str(result)})
    return [sys.executable, "-m", "grokkit", "ensemble", str(batches / f"{name}.json")], result
