"""The ``grokkit`` command: fit / validate / test through LightningCLI, plus report."""

import logging
import signal
import sys
import traceback
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from grokkit.callbacks import ConsoleProgress, ImplicitBiasProbe, PhaseDetector
from grokkit.data.full_batch import FullBatchDataModule
from grokkit.errors import ConfigError, require
from grokkit.report import plot_run
from grokkit.rundir import MetricsCSVLogger, choose_run_dir, write_json_atomic
from grokkit.task import GrokTask
from grokkit.wandb_setup import WandbSettings, make_wandb_logger

EXIT_CODES = {"completed": 0, "failed": 1, "bad_input": 2, "diverged": 3, "interrupted": 130}
CHECKPOINT_EVERY = timedelta(minutes=10)

# Full-batch training is driven by GrokTask's evaluation schedule: no per-step progress bar,
# no default logger or checkpoint callback (the run directory sets up its own), no sanity check.
TRAINER_DEFAULTS = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
    "devices": 1,
}

USAGE = """usage: grokkit COMMAND [options]

commands:
  fit       train a model: grokkit fit --config FILE.yaml [--section.key=value ...]
  validate  evaluate a config (optionally a checkpoint, --ckpt_path) on the train and test sets
  test      same as validate, reported as test metrics
  sweep     run a W&B sweep file on this machine, no server: grokkit sweep FILE --workers N
  agent     one `wandb agent --forward-signals` per GPU: grokkit agent SWEEP_ID --gpus 0,1
  report    table and figures for a run directory or a sweep: grokkit report PATH

`grokkit COMMAND --help` lists every option of a command.
"""


def _quiet_third_party_noise() -> None:
    """Drop advertising and deprecation chatter that says nothing about the run."""
    for handler in logging.getLogger("lightning.pytorch").handlers:
        handler.addFilter(lambda record: "litlogger" not in record.getMessage())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within")
    warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need")


class GrokkitCLI(LightningCLI):
    """LightningCLI with grokkit's run directory, W&B settings and phase detector."""

    def __init__(self, *args: Any, argv: list[str] | None = None, **kwargs: Any) -> None:
        self.argv = argv
        super().__init__(*args, args=argv, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="Run directory (default runs/<config file name>; never overwritten: -2, -3, ...)",
        )
        parser.add_class_arguments(WandbSettings, "wandb")
        parser.add_lightning_class_args(PhaseDetector, "phases")

    def before_instantiate_classes(self) -> None:
        """A callback class given twice is bad input (Lightning would fail on its state key)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        kinds = ["PhaseDetector"]  # always added, configured by `phases.*`
        for callback in config.trainer.get("callbacks") or []:
            class_path = getattr(callback, "class_path", None) or str(callback)
            kinds.append(class_path.rsplit(".", 1)[-1])
        twice = sorted({k for k in kinds if kinds.count(k) > 1})
        require(
            not twice,
            f"trainer.callbacks: {', '.join(twice)} given twice (each callback class may appear "
            f"once; --trainer.callbacks=[] clears the config's list before adding)",
        )

    def fit(
        self,
        model: GrokTask,
        datamodule: FullBatchDataModule,
        ckpt_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        config = self.config["fit"]
        require(
            self.trainer.max_steps is not None and self.trainer.max_steps > 0,
            f"trainer.max_steps must be a positive number of gradient steps, "
            f"got {self.trainer.max_steps}",
        )
        require(
            ckpt_path is None or Path(ckpt_path).is_file(),
            f"ckpt_path: no checkpoint file at {ckpt_path}",
        )
        default_name = _config_stem(sys.argv[1:] if self.argv is None else self.argv)
        run_dir = choose_run_dir(config.run_dir, default_name, ckpt_path)
        self.run_dir = run_dir
        print(f"grokkit: run directory {run_dir}", flush=True)

        saved = config.clone()
        saved.run_dir, saved.ckpt_path = str(run_dir), None
        (run_dir / "config.yaml").write_text(self._parser("fit").dump(saved, skip_none=False))

        previous = _install_stop_handlers(model)
        status, bad_input, wandb_logger = "failed", None, None
        try:
            wandb_logger = self._attach_run_callbacks(run_dir, ckpt_path, saved.as_dict())
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            if model.diverged:
                status = "diverged"
            elif model.stop_requested or self.trainer.global_step < self.trainer.max_steps:
                status = "interrupted"
            else:
                status = "completed"
        except (KeyboardInterrupt, SystemExit):
            status = "interrupted"
        except Exception as error:
            (run_dir / "error.log").write_text(traceback.format_exc())
            bad_input = _bad_input(error)
            if bad_input is not None:
                print(f"grokkit: error: {_one_line(bad_input)}", file=sys.stderr)
            else:
                print(
                    f"grokkit: training failed: {_one_line(error)} (traceback in "
                    f"{run_dir / 'error.log'})",
                    file=sys.stderr,
                )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._finalize(model, status, wandb_logger)
        self.exit_code = EXIT_CODES["bad_input" if bad_input else status]

    def _attach_run_callbacks(self, run_dir: Path, ckpt_path: str | None, config: dict) -> Any:
        """metrics.csv and W&B loggers, console progress, periodic last.ckpt; returns the
        WandbLogger (None when W&B is disabled)."""
        resume_step = _checkpoint_step(ckpt_path) if ckpt_path else None
        loggers: list[Any] = [MetricsCSVLogger(run_dir, resume_step=resume_step)]
        wandb_logger = make_wandb_logger(self.config_init["fit"]["wandb"], run_dir, config)
        if wandb_logger is not None:
            loggers.append(wandb_logger)
        self.trainer.loggers = loggers
        self.trainer.callbacks.append(ConsoleProgress())
        self.trainer.callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                save_last=True,
                save_top_k=0,
                train_time_interval=CHECKPOINT_EVERY,
                save_on_train_epoch_end=False,
            )
        )
        return wandb_logger

    def _finalize(self, model: GrokTask, status: str, wandb_logger: Any) -> None:
        """Checkpoint, summary.json (written last, atomically), curves.png, W&B summary."""
        run_dir = self.run_dir
        try:
            self.trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        except Exception as error:  # a failed run may have nothing consistent to save
            print(f"grokkit: no final checkpoint ({error})", file=sys.stderr)
        phases = next(cb for cb in self.trainer.callbacks if isinstance(cb, PhaseDetector))
        summary: dict[str, Any] = {
            "status": status,
            "steps": self.trainer.global_step,
            **phases.summary(),
            "predicted_transition_time": model.predicted_transition_time,
            **(model.last_row or {}),
        }
        for callback in self.trainer.callbacks:
            if isinstance(callback, ImplicitBiasProbe) and callback.references:
                summary["references"] = callback.references
        write_json_atomic(run_dir / "summary.json", summary)
        if (run_dir / "metrics.csv").exists():
            plot_run(run_dir)
        if wandb_logger is not None:
            # W&B has no null: a phase not reached is simply absent from its summary.
            flat = {k: v for k, v in summary.items() if v is not None and not isinstance(v, dict)}
            flat.update({f"thresholds/{k}": v for k, v in summary["thresholds"].items()})
            for name, metrics in summary.get("references", {}).items():
                flat.update({f"references/{name}/{k}": v for k, v in metrics.items()})
            wandb_logger.experiment.summary.update(flat)
            wandb_logger.experiment.finish(exit_code=EXIT_CODES[status])
        print(f"grokkit: {status} after {summary['steps']} steps; results in {run_dir}", flush=True)


def _config_stem(argv: list[str]) -> str:
    """The name of the last --config file on the command line ("run" if none)."""
    stem = "run"
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            stem = Path(argv[i + 1]).stem
        elif arg.startswith("--config="):
            stem = Path(arg.split("=", 1)[1]).stem
    return stem


def _checkpoint_step(ckpt_path: str) -> int:
    import torch

    return int(torch.load(ckpt_path, map_location="cpu", weights_only=False)["global_step"])


def _install_stop_handlers(model: GrokTask) -> dict[int, Any]:
    """SIGINT/SIGTERM ask the training loop to stop after the current step (then checkpoint and
    summary are written); a second Ctrl-C interrupts at once."""

    def request_stop(signum: int, frame: Any) -> None:
        print(
            f"\ngrokkit: received {signal.Signals(signum).name}; stopping after this step",
            file=sys.stderr,
            flush=True,
        )
        model.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, request_stop)
    return previous


def _bad_input(error: BaseException) -> BaseException | None:
    """The user-input error behind ``error`` (jsonargparse wraps constructor errors), if any."""
    seen = error
    while seen is not None:
        if isinstance(seen, ConfigError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error if isinstance(error, ArgumentError) else None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _make_cli(argv: list[str] | None, run: bool = True) -> GrokkitCLI:
    return GrokkitCLI(
        model_class=GrokTask,
        datamodule_class=FullBatchDataModule,
        subclass_mode_data=True,
        save_config_callback=None,
        auto_configure_optimizers=False,
        seed_everything_default=True,
        trainer_defaults=TRAINER_DEFAULTS,
        parser_kwargs={"parser_mode": "omegaconf+", "exit_on_error": False},
        argv=argv,
        run=run,
    )


def check_fit_args(argv: list[str]) -> None:
    """Parse ``grokkit fit`` arguments and build the model, data and trainer without training
    (a sweep's preflight); a bad input raises ConfigError with its one-line message."""
    _quiet_third_party_noise()
    logs = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.WARNING)
    try:
        _make_cli(argv, run=False)
    except Exception as error:
        bad_input = _bad_input(error)
        if bad_input is None:
            raise
        raise ConfigError(_one_line(bad_input)) from None
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "report":
        from grokkit.report.cli import report_main

        return report_main(rest)
    if command in ("sweep", "agent"):
        from grokkit.sweep.cli import agent_main, sweep_main

        return (sweep_main if command == "sweep" else agent_main)(rest)
    if command not in GrokkitCLI.subcommands():
        print(
            f"grokkit: error: unknown command {command!r} "
            "(expected fit, validate, test, sweep, agent or report)",
            file=sys.stderr,
        )
        return EXIT_CODES["bad_input"]
    _quiet_third_party_noise()
    try:
        cli = _make_cli(argv)
    except Exception as error:
        bad_input = _bad_input(error)
        if bad_input is None:
            raise
        print(f"grokkit: error: {_one_line(bad_input)}", file=sys.stderr)
        return EXIT_CODES["bad_input"]
    return getattr(cli, "exit_code", 0)


if __name__ == "__main__":
    sys.exit(main())
