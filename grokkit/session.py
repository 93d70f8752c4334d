"""One fit's life, from an empty run directory to a complete one.

``FitSession.run`` claims the run directory, writes config.yaml, trains under SIGINT/SIGTERM
handling, decides the status, and then, however training ended, writes the final checkpoint,
summary.json (atomically; during training it is kept current with status ``running``),
curves.png and the W&B summary.
"""

import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from grokkit.batching import in_ensemble
from grokkit.callbacks import ConsoleProgress, ImplicitBiasProbe, PhaseDetector, Snapshots
from grokkit.console import error, one_line, say
from grokkit.errors import user_error
from grokkit.lightning_adapter import checkpoint_global_step, save_checkpoint_atomic
from grokkit.outcome import EXIT_CODES
from grokkit.report import plot_run
from grokkit.rundir import METRICS, MetricsCSVLogger, choose_run_dir, write_config, write_summary
from grokkit.signals import on_stop_signals, signal_name
from grokkit.task import GrokTask
from grokkit.wandb_setup import WandbSettings, finish_wandb_run, make_wandb_logger

CHECKPOINT_EVERY = 60.0  # seconds of lost work at most after a SIGKILL (``--checkpoint_every``)
CHEAP_SAVE_SHARE = 0.01  # between those, save at an evaluation point if it costs ≤ 1% of the time
PLOT_LOCK = threading.Lock()


class PeriodicCheckpoint(pl.Callback):
    """Keep ``last.ckpt`` and summary.json (status ``running``) current, so a run killed at any
    moment (SIGKILL, OOM, a node lost) can be continued with ``--ckpt_path=last``.

    Saves at an evaluation point (the end of a Lightning step) once ``every`` seconds have
    passed since the last save, or earlier when the last save took at most 1% of the time
    since: cheap checkpoints are written at every evaluation point, costly ones at most every
    ``every`` seconds. The checkpoint is written atomically (a temporary file, then a rename),
    so a process killed mid-save leaves the previous one whole.

    Lightning's ``ModelCheckpoint(train_time_interval=...)`` never fires under manual
    optimization (it only checks ``every_n_train_steps`` there), which GrokTask uses.
    """

    def __init__(
        self,
        path: Path,
        every: float,
        on_save: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path, self.every, self.on_save, self.clock = Path(path), every, on_save, clock
        self.last_saved = clock()
        self.save_seconds = 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        elapsed = self.clock() - self.last_saved
        if elapsed < min(self.every, self.save_seconds / CHEAP_SAVE_SHARE):
            return
        started = self.clock()
        save_checkpoint_atomic(trainer, self.path)
        self.on_save()
        self.last_saved = self.clock()
        self.save_seconds = self.last_saved - started


class FitSession:
    """Train ``task`` on ``datamodule`` with ``trainer`` into a run directory of its own.

    Args:
        run_dir: the requested run directory (None: ``runs/<default_name>``); an existing run
            is never overwritten (see ``grokkit.rundir.choose_run_dir``).
        dump_config: the resolved config as YAML, given the claimed run directory.
        config: the resolved config as a dict (W&B's run config).
        wandb: the ``wandb:`` section.
        ckpt_path: checkpoint to resume from (its run directory is continued).
        continue_run: continue in ``run_dir`` itself (``--ckpt_path=last``), also when it has
            no checkpoint yet (then from the start).
        checkpoint_every: seconds between saves of last.ckpt at most (see PeriodicCheckpoint).
    """

    def __init__(
        self,
        trainer: pl.Trainer,
        task: GrokTask,
        datamodule: pl.LightningDataModule,
        *,
        run_dir: str | None,
        default_name: str,
        dump_config: Callable[[Path], str],
        config: dict[str, Any],
        wandb: WandbSettings,
        ckpt_path: str | None = None,
        continue_run: bool = False,
        checkpoint_every: float = CHECKPOINT_EVERY,
    ) -> None:
        self.trainer, self.task, self.datamodule = trainer, task, datamodule
        self.requested_dir, self.default_name = run_dir, default_name
        self.dump_config, self.config, self.wandb = dump_config, config, wandb
        self.ckpt_path, self.continue_run = ckpt_path, continue_run
        self.checkpoint_every = checkpoint_every
        self.run_dir: Path | None = None
        self.wandb_logger: Any = None

    def run(self) -> int:
        """Train and write the run directory; returns the exit code."""
        self.run_dir = choose_run_dir(
            self.requested_dir, self.default_name, self.ckpt_path, self.continue_run
        )
        say(f"run directory {self.run_dir}")
        config = self.dump_config(self.run_dir)
        write_config(self.run_dir, config)
        status, bad_input = "failed", False
        try:
            with on_stop_signals(self._request_stop):
                self._attach_run_callbacks()
                self.trainer.fit(self.task, datamodule=self.datamodule, ckpt_path=self.ckpt_path)
                status = self._status()
        except (KeyboardInterrupt, SystemExit):
            status = "interrupted"
        except Exception as exc:
            (self.run_dir / "error.log").write_text(traceback.format_exc())
            cause = user_error(exc)
            bad_input = cause is not None
            if bad_input:
                error(cause)
            else:
                say(
                    f"training failed: {one_line(exc)} (traceback in {self.run_dir / 'error.log'})",
                    to_stderr=True,
                )
        finally:
            self._finish(status)
        return EXIT_CODES["bad_input" if bad_input else status]

    def _request_stop(self, signum: int) -> None:
        """The training loop stops after the current gradient step (then the checkpoint and
        summary are written); a second Ctrl-C interrupts at once."""
        say(f"received {signal_name(signum)}; stopping after this step", to_stderr=True)
        self.task.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _status(self) -> str:
        if self.task.diverged:
            return "diverged"
        # trainer.max_time and EarlyStopping are ends the config set: the run ends completed (as
        # at max_steps), with the range it reached in its rows
        ended = self.task.at_end or self.task.early_stopped or self.task.time_budget_spent()
        if self.task.stop_requested or not ended:
            return "interrupted"
        return "completed"

    def _attach_run_callbacks(self) -> None:
        """metrics.csv and W&B loggers, console progress, periodic last.ckpt."""
        assert self.run_dir is not None
        resume_step = checkpoint_global_step(self.ckpt_path) if self.ckpt_path else None
        # the user's own loggers (--trainer.logger) get the rows too
        loggers: list[Any] = [
            *self.trainer.loggers,
            MetricsCSVLogger(self.run_dir, resume_step=resume_step),
        ]
        self.wandb_logger = make_wandb_logger(
            self.wandb,
            self.run_dir,
            self.config,
            self.task.hparams.weight_decay,
            shared_process=in_ensemble(),
        )
        if self.wandb_logger is not None:
            loggers.append(self.wandb_logger)
        self.trainer.loggers = loggers
        self.trainer.callbacks.append(ConsoleProgress())
        run_dir = self.run_dir
        for callback in self.trainer.callbacks:
            if isinstance(callback, Snapshots):
                callback.directory = run_dir / "checkpoints"
        self.trainer.callbacks.append(
            PeriodicCheckpoint(
                run_dir / "checkpoints" / "last.ckpt",
                self.checkpoint_every,
                on_save=lambda: write_summary(run_dir, self._summary("running")),
            )
        )

    def _finish(self, status: str) -> None:
        """Checkpoint, summary.json (written last, atomically), curves.png, W&B summary."""
        run_dir, trainer = self.run_dir, self.trainer
        assert run_dir is not None
        try:
            save_checkpoint_atomic(trainer, run_dir / "checkpoints" / "last.ckpt")
        except Exception as exc:  # a failed run may have nothing consistent to save
            say(f"no final checkpoint ({exc})", to_stderr=True)
        summary = self._summary(status)
        write_summary(run_dir, summary)
        if (run_dir / METRICS).exists():
            with PLOT_LOCK:  # pyplot is not thread-safe (the runs of an ensemble are threads)
                plot_run(run_dir)
        if self.wandb_logger is not None:
            self._finish_wandb(summary, status)
        say(f"{status} after {summary['steps']} steps; results in {run_dir}")

    def _summary(self, status: str) -> dict[str, Any]:
        """summary.json's contents now; ``running`` while training (a killed run keeps that)."""
        trainer = self.trainer
        phases = next(cb for cb in trainer.callbacks if isinstance(cb, PhaseDetector))
        summary: dict[str, Any] = {
            "status": status,
            "steps": trainer.global_step,
            "integrator": self.task.hparams.integrator,
            "gradient_evaluations": self.task.gradient_evaluations,
            **phases.summary(),
            "predicted_transition_time": self.task.predicted_transition_time,
            **(self.task.last_row or {}),
        }
        for callback in trainer.callbacks:
            if isinstance(callback, ImplicitBiasProbe) and callback.references:
                summary["references"] = callback.references
        return summary

    def _finish_wandb(self, summary: dict[str, Any], status: str) -> None:
        assert self.run_dir is not None
        finish_wandb_run(
            self.wandb_logger.experiment,
            summary,
            EXIT_CODES[status],
            self.run_dir,
            self.wandb,
            self.task.hparams.weight_decay,
        )
