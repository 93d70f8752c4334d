"""``grokkit figures``: every figure panel of the paper, at the paper's own scale, on this machine.

The panel table below names, for each panel, its runs: the paper configs of configs/paper/ (the
paper's d, n, p, width, α, λ and data sizes) with the adaptive gradient-flow integrator and a
flow-time horizon that covers the panel's phenomenon (Fig. 4, loss-normalized, whose t passes
10^308, for a wall-clock budget instead). Each run is its own ``grokkit fit`` process writing
``<runs>/<name>/`` (output in ``<runs>/logs/<name>.log``); a run whose summary.json says it is
finished is skipped, an interrupted or killed one (summary.json still ``running``) continues in
its directory with ``--ckpt_path=last``, so rerunning the command picks up where it stopped.
``<runs>/figures.json`` keeps each run's command, exit code and wall time. After every run, the
selected panels are redrawn as ``<out>/fig<panel>.png`` and ``<out>/table.md`` lists every run
of the table (wall time, gradient evaluations, phase times).
A run shared by two panels (2b's α = 10 is 2c's λ = 1e-4) runs once.
"""

import argparse
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokkit.console import error, say
from grokkit.errors import ConfigError
from grokkit.outcome import EXIT_CODES, FINAL, status_of_run
from grokkit.report.figures import TableRun, draw_panel, write_table
from grokkit.rundir import CONFIG, read_summary, write_json_atomic
from grokkit.signals import on_stop_signals, signal_name

ROOT = Path(__file__).resolve().parents[1]  # the repository: configs/ lives here
PAPER = "configs/paper/"
FIG2 = PAPER + "e3_modular_fig2.yaml"
# Figure runs record what the panels plot (no dichotomy callbacks: at the paper's sizes the NTK
# and the max-L1 reference alone cost minutes), and integrate the gradient flow under control.
ADAPTIVE = ("--trainer.callbacks=[]", "--model.integrator=adaptive")
MANIFEST = "figures.json"


@dataclass(frozen=True)
class FigureRun:
    """One ``grokkit fit``: its config files (base first) and overrides."""

    configs: tuple[str, ...]
    overrides: tuple[str, ...]

    def fit_args(self, run_dir: Path) -> list[str]:
        """The arguments after ``grokkit fit``."""
        files = [arg for path in self.configs for arg in ("--config", _config_path(path))]
        return [*files, *self.overrides, f"--run_dir={run_dir}"]


@dataclass(frozen=True)
class Panel:
    """One PNG: a title, a plot kind of grokkit.report.figures.PLOTS and its (label, run)s."""

    title: str
    kind: str
    runs: tuple[tuple[str, str], ...]


def _adaptive(horizon: float, *extra: str) -> tuple[str, ...]:
    return (*ADAPTIVE, f"--model.max_flow_time={horizon:g}", *extra)


# Figs. 2 and 4 (the ReLU net) run at rtol = 1e-2. The ReLU kinks make E3's late-phase flow
# non-smooth: the step's error estimate stops shrinking like h³ and grows about like h (it sees
# the gradient jump across kinks), so the tolerance acts as a cap on each step's move,
# rtol·‖θ‖, and the cost grows like 1/rtol: about 15 000, 2 500 and 1 500 evaluations per unit
# of λt at 1e-3, 1e-2 and 3e-2 on Fig. 2b's α = 10 run (benchmarks/flow_rtol.py); runs at 1e-2
# and 1e-3 agree on every evaluation row both reached (README, "ReLU nets").
RELU_RTOL = "--model.rtol=1e-2"


def _fig2(variant: str, weight_decay: float, lam_t: float) -> FigureRun:
    """A Fig. 2 run to λt = lam_t (its horizon in flow time is lam_t/λ)."""
    return FigureRun((FIG2, PAPER + variant), _adaptive(lam_t / weight_decay, RELU_RTOL))


# The order the runs are made in: smallest first, but 2b together (its α = 100 is the longest).
# Horizons in flow time t: E1, E2 to λt = 20 (the paper's E1 run ends there: 2·10^6 steps of
# η = 0.01), E5 to λt = 20. Fig. 2 to just past each run's phenomenon (they cost ~2 500–4 500
# evaluations per unit of λt): 2b's α = 1 and α = 10 to λt = 10, α = 100 (50% test accuracy
# near λt = 7.4 in the paper) to 9, 2a to 5; 2c's larger λ grok earlier in t but later in λt
# (λ = 1e-3 reached 95% near λt = 11 in the CPU trend config), so λ = 3e-4 to 10, λ = 1e-3 to 14;
# and λ = 3e-3, whose training accuracy has collapsed by λt ≈ 4, to 5.
RUNS: dict[str, FigureRun] = {
    "e1_sparse_grokking": FigureRun(
        (PAPER + "e1_sparse_grokking.yaml",), _adaptive(2e4, "--model.eval_points=200")
    ),
    "e2_misgrokking": FigureRun(
        (PAPER + "e2_misgrokking.yaml",), _adaptive(2e4, "--model.eval_points=200")
    ),
    "e5_matrix_completion": FigureRun((PAPER + "e5_matrix_completion.yaml",), _adaptive(2e5)),
    "e3_alpha1": _fig2("e3_modular_fig2b_alpha1.yaml", 1e-4, 10),
    "e3_alpha10_wd1e-4": _fig2("e3_modular_fig2b_alpha10.yaml", 1e-4, 10),
    "e3_alpha100": _fig2("e3_modular_fig2b_alpha100.yaml", 1e-4, 9),
    "e3_wd3e-3": _fig2("e3_modular_fig2c_wd3e-3.yaml", 3e-3, 5),
    "e3_fig2a": _fig2("e3_modular_fig2a.yaml", 1e-4, 5),
    # Loss-normalized (t passes 10^308): the adaptive integrator on the flow of log L, as far as
    # an hour reaches (a time budget, so the run ends completed with the range in its rows).
    "e4_no_decay": FigureRun(
        (PAPER + "e4_modular_no_decay.yaml",),
        (
            "--trainer.callbacks=[]",
            "--model.integrator=adaptive",
            RELU_RTOL,
            "--trainer.max_time=00:01:00:00",
        ),
    ),
    "e3_wd1e-3": _fig2("e3_modular_fig2c_wd1e-3.yaml", 1e-3, 14),
    "e3_wd3e-4": _fig2("e3_modular_fig2c_wd3e-4.yaml", 3e-4, 10),
}

PANELS: dict[str, Panel] = {
    "1a": Panel("Fig. 1a, E1 grokking", "curves", (("d = 10^5, α = 128", "e1_sparse_grokking"),)),
    "1b": Panel("Fig. 1b, E2 misgrokking", "curves", (("d = 10^5, α = 128", "e2_misgrokking"),)),
    "2a": Panel("Fig. 2a, modular addition", "curves", (("α = 1, W2 not zeroed", "e3_fig2a"),)),
    "2b": Panel(
        "Fig. 2b, modular addition, λ = 1e-4, W2 = 0: init scale",
        "overlay",
        (("α = 1", "e3_alpha1"), ("α = 10", "e3_alpha10_wd1e-4"), ("α = 100", "e3_alpha100")),
    ),
    "2c": Panel(
        "Fig. 2c, modular addition, α = 10, W2 = 0: weight decay",
        "overlay_train",
        (
            ("λ = 1e-4", "e3_alpha10_wd1e-4"),
            ("λ = 3e-4", "e3_wd3e-4"),
            ("λ = 1e-3", "e3_wd1e-3"),
            ("λ = 3e-3", "e3_wd3e-3"),
        ),
    ),
    "3": Panel(
        "Fig. 3, E5 matrix completion", "regression", (("d = 97, α = 10", "e5_matrix_completion"),)
    ),
    "4": Panel(
        "Fig. 4, modular addition without weight decay",
        "log_time",
        (("α = 1, λ = 0", "e4_no_decay"),),
    ),
}

USAGE = (
    "grokkit figures [--only 1a,2b,...] [--out docs/figures] [--runs runs/figures] "
    "[--jobs N] [--dry-run | --draw-only]"
)


def _config_path(path: str) -> str:
    """A config path as given when it exists from here, else from the repository."""
    return path if Path(path).is_file() else str(ROOT / path)


def panels_of(run: str) -> list[str]:
    return [pid for pid, panel in PANELS.items() if run in {name for _, name in panel.runs}]


def runs_of(panel_ids: list[str]) -> list[str]:
    """The runs the panels need, each once, in the order of RUNS (smallest first)."""
    wanted = {name for pid in panel_ids for _, name in PANELS[pid].runs}
    return [name for name in RUNS if name in wanted]


def parse_only(text: str | None) -> list[str]:
    """``"1a,2b"`` -> ["1a", "2b"] in table order; None -> every panel."""
    if text is None:
        return list(PANELS)
    asked = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in asked if part not in PANELS]
    if unknown or not asked:
        raise ConfigError(
            f"figures: --only {text!r}: unknown panel {', '.join(unknown) or '(none)'} "
            f"(expected a comma-separated list of {', '.join(PANELS)})"
        )
    return [pid for pid in PANELS if pid in asked]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``grokkit: error:`` line, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"figures: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="grokkit figures", usage=USAGE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help=f"panels, comma-separated: {','.join(PANELS)}")
    parser.add_argument("--out", default="docs/figures", help="where the PNGs and table.md go")
    parser.add_argument("--runs", default="runs/figures", help="where the run directories go")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once, each with cores/N threads (default 1: one run on every core)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    parser.add_argument(
        "--draw-only",
        action="store_true",
        help="redraw the panels and the table from the runs as they are, train nothing",
    )
    return parser


def figures_main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.jobs < 1:
            raise ConfigError(f"figures: --jobs must be >= 1, got {args.jobs}")
        maker = FigureMaker(parse_only(args.only), Path(args.out), Path(args.runs), args.jobs)
        if args.draw_only:
            return maker.redraw()
        maker.check()
    except ConfigError as exc:
        error(exc)
        return EXIT_CODES["bad_input"]
    return maker.dry_run() if args.dry_run else maker.run()


class FigureMaker:
    """Makes the runs of ``panel_ids``, ``jobs`` at a time, redrawing a run's panels and the
    table as it ends. The runs' processes are its threads' children; only the main thread
    draws and writes the manifest."""

    def __init__(self, panel_ids: list[str], out: Path, runs_dir: Path, jobs: int = 1) -> None:
        self.panel_ids, self.out, self.runs_dir, self.jobs = panel_ids, out, runs_dir, jobs
        self.names = runs_of(panel_ids)
        self.manifest: dict[str, dict[str, Any]] = self._load_manifest()
        self.stopping = 0
        self.processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()  # guards manifest and processes across the run threads

    # --- state --------------------------------------------------------------------------------
    def _load_manifest(self) -> dict[str, dict[str, Any]]:
        path = self.runs_dir / MANIFEST
        return json.loads(path.read_text()).get("runs", {}) if path.is_file() else {}

    def _save_manifest(self) -> None:
        """Write this command's runs into the manifest, keeping every other run's record as it
        is on disk now: two ``grokkit figures --only`` may share a runs directory at once."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.runs_dir / (MANIFEST + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            runs = self._load_manifest()
            runs.update({name: r for name, r in self.manifest.items() if name in self.names})
            write_json_atomic(self.runs_dir / MANIFEST, {"runs": runs})

    def done(self, name: str) -> bool:
        return read_summary(self.runs_dir / name).get("status") in FINAL

    def resumes(self, name: str) -> bool:
        """Whether the run continues in its directory (``--ckpt_path=last``: from its last
        checkpoint, or from the start when it has none; else it starts afresh): it was
        interrupted, or its process died while its summary said ``running``."""
        run_dir = self.runs_dir / name
        status = read_summary(run_dir).get("status")
        return status in ("interrupted", "running") and (run_dir / CONFIG).is_file()

    def command(self, name: str) -> list[str]:
        """``python -m grokkit fit ...`` for the run; continues an interrupted one."""
        argv = [sys.executable, "-m", "grokkit", "fit", *RUNS[name].fit_args(self.runs_dir / name)]
        return argv + ["--ckpt_path=last"] if self.resumes(name) else argv

    # --- commands -----------------------------------------------------------------------------
    def check(self) -> None:
        """Every run's arguments parse and build (nothing trained), before the first starts."""
        from grokkit.lightning_cli import check_fit_args

        for name in self.names:
            try:
                check_fit_args(RUNS[name].fit_args(self.runs_dir / name))
            except ConfigError as exc:
                raise ConfigError(f"figures: run {name}: {exc}") from None

    def dry_run(self) -> int:
        for name in self.names:
            note = "done, skipped" if self.done(name) else "to run"
            print(f"# {name} (panels {', '.join(panels_of(name))}): {note}")
            print(shlex.join(self.command(name)))
        print(
            f"# panels {', '.join(self.panel_ids)} -> "
            f"{self.out}/fig<panel>.png, {self.out}/table.md"
        )
        return EXIT_CODES["completed"]

    def redraw(self) -> int:
        drawn = self.draw(self.panel_ids)
        say(f"drew {len(drawn)} panel(s) and {self.out / 'table.md'}", who="grokkit figures")
        return EXIT_CODES["completed"]

    def run(self) -> int:
        todo = [name for name in self.names if not self.done(name)]
        say(
            f"panels {', '.join(self.panel_ids)}: {len(self.names)} runs, "
            f"{len(self.names) - len(todo)} already done; "
            f"runs in {self.runs_dir}, figures in {self.out}",
            who="grokkit figures",
        )
        failed, drawn = [], set()
        with on_stop_signals(self._request_stop), ThreadPoolExecutor(self.jobs) as pool:
            pending: dict[Future, str] = {pool.submit(self._fit, name): name for name in todo}
            while pending:
                # a timeout, so that a stop signal is handled while the runs go on
                finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = pending.pop(future)
                    if future.result() not in FINAL:
                        failed.append(name)
                    with self._lock:
                        self._save_manifest()
                    drawn |= self.draw([pid for pid in self.panel_ids if pid in panels_of(name)])
        self.draw([pid for pid in self.panel_ids if pid not in drawn])
        return self._conclude(failed)

    def _conclude(self, failed: list[str]) -> int:
        if self.stopping:
            say("stopped; rerun the same command to resume", who="grokkit figures")
            return EXIT_CODES["interrupted"]
        if failed:
            say(
                f"runs not finished: {', '.join(failed)} (logs in {self.runs_dir / 'logs'})",
                who="grokkit figures",
            )
            return EXIT_CODES["failed"]
        say(f"done: {self.out}/table.md", who="grokkit figures")
        return EXIT_CODES["completed"]

    # --- one run ------------------------------------------------------------------------------
    def _fit(self, name: str) -> str:
        """Run one fit to its end (in a pool thread); returns its status."""
        if self.stopping:  # queued behind a run that a signal stopped: never started
            return "interrupted"
        run_dir = self.runs_dir / name
        argv = self.command(name)
        with self._lock:
            record = self.manifest.setdefault(name, {"seconds": 0.0, "attempts": 0})
            if not self.resumes(name):  # a fresh start: its wall time is the table's
                record["seconds"] = 0.0
                if run_dir.exists():
                    _set_aside(run_dir)
            record.update(command=argv, attempts=record["attempts"] + 1)
        say(f"{name}: running (log {self.runs_dir / 'logs' / name}.log)", who="grokkit figures")
        started = time.monotonic()
        code = self._launch(argv, name)
        status = status_of_run(code, read_summary(run_dir).get("status"))
        with self._lock:
            record.update(
                seconds=round(record["seconds"] + time.monotonic() - started, 1),
                exit_code=code,
                status=status,
            )
        say(
            f"{name}: {record['status']} (exit {code}, {record['seconds']:.0f} s in all)",
            who="grokkit figures",
        )
        return record["status"]

    def child_env(self) -> dict[str, str]:
        """A run's environment: W&B off unless asked for, and with ``jobs`` > 1 a share of the
        cores for each run's torch threads (a user's OMP_NUM_THREADS wins)."""
        env = dict(os.environ)
        env.setdefault("WANDB_MODE", "disabled")
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.jobs > 1:
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.jobs)))
        return env

    def _launch(self, argv: list[str], name: str) -> int:
        env = self.child_env()
        logs = self.runs_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "a") as log:
            log.write(f"$ {shlex.join(argv)}\n")
            log.flush()
            # Own session: a terminal Ctrl-C reaches only this process, which forwards it.
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            with self._lock:
                self.processes.add(process)
            code = process.wait()
        with self._lock:
            self.processes.discard(process)
        return code

    def _request_stop(self, signum: int) -> None:
        """First signal: SIGTERM to the runs (each checkpoints and writes its summary); second:
        SIGINT, which stops them at once. Queued runs are not started."""
        self.stopping += 1
        say(
            f"{signal_name(signum)}: stopping the current runs",
            who="grokkit figures",
            to_stderr=True,
        )
        with self._lock:
            running = [p for p in self.processes if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM if self.stopping == 1 else signal.SIGINT)

    # --- drawing ------------------------------------------------------------------------------
    def draw(self, panel_ids: list[str]) -> set[str]:
        """Redraw these panels from whatever runs have data, and the whole table; returns the
        panels drawn."""
        drawn = set()
        for pid in panel_ids:
            panel = PANELS[pid]
            runs = [(label, self.runs_dir / name) for label, name in panel.runs]
            if draw_panel(panel.kind, panel.title, runs, self.out / f"fig{pid}.png"):
                drawn.add(pid)
        rows = [
            TableRun(name, self.runs_dir / name, panels_of(name), self.seconds(name))
            for name in RUNS
        ]
        write_table(rows, self.out / "table.md", TABLE_PREAMBLE)
        return drawn

    def seconds(self, name: str) -> float | None:
        return self.manifest.get(name, {}).get("seconds")


TABLE_PREAMBLE = (
    "Runs of `grokkit figures` (configs/paper/ at the paper's sizes; adaptive integrator at its "
    "default rtol = 1e-3, the ReLU net's (Figs. 2 and 4) at rtol = 1e-2; Fig. 4 loss-normalized, "
    "for an hour). Times are gradient-flow times t, with λt in brackets; wall time is the fit "
    "process's, on the machine that ran it.\n"
)


def _set_aside(run_dir: Path) -> None:
    """Keep an unfinished attempt's files (never delete data) out of the way of the rerun."""
    k = 1
    while run_dir.with_name(f"{run_dir.name}.attempt-{k}").exists():
        k += 1
    run_dir.rename(run_dir.with_name(f"{run_dir.name}.attempt-{k}"))
