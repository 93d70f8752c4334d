"""``grokkit fit|validate|test``: the LightningCLI parser, its checks, and the hand-off of a fit
to ``grokkit.session.FitSession``."""

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from grokkit.callbacks import PhaseDetector
from grokkit.console import one_line, say
from grokkit.data.full_batch import FullBatchDataModule
from grokkit.errors import ConfigError, require, user_error
from grokkit.lightning_adapter import load_checkpoint
from grokkit.rundir import checkpoint_run_dir, read_config
from grokkit.session import FitSession
from grokkit.task import GrokTask
from grokkit.wandb_setup import WandbSettings

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


def quiet_third_party_noise() -> None:
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
        self.exit_code = 0
        super().__init__(*args, args=argv, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the checkpoint's hyperparameters into the config here, first of
        all: an unreadable file is one line of bad input, not a traceback."""
        try:
            super()._parse_ckpt_path()
        except Exception as exc:  # noqa: BLE001 — whatever the reader raises, the file is bad
            ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
            raise ConfigError(unreadable_checkpoint(ckpt_path, exc)) from None

    def before_validate(self) -> None:
        self._say_if_untrained("validate")

    def before_test(self) -> None:
        self._say_if_untrained("test")

    def _say_if_untrained(self, command: str) -> None:
        if self.config[command].get("ckpt_path") is None:
            say(
                f"{command}: no --ckpt_path given, so this evaluates the untrained "
                f"initialization (pass --ckpt_path=RUN/checkpoints/last.ckpt for a trained net)",
                to_stderr=True,
            )

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
        saved = config.clone()

        def dump_config(run_dir: Path) -> str:
            saved.run_dir, saved.ckpt_path = str(run_dir), None
            return self._parser("fit").dump(saved, skip_none=False)

        if ckpt_path is not None:  # before anything is written into the checkpoint's run
            check_resumable(Path(ckpt_path), model, yaml.safe_load(dump_config(Path("."))))

        self.exit_code = FitSession(
            self.trainer,
            model,
            datamodule,
            run_dir=config.run_dir,
            default_name=config_stem(sys.argv[1:] if self.argv is None else self.argv),
            dump_config=dump_config,
            config=saved.as_dict(),
            wandb=self.config_init["fit"]["wandb"],
            ckpt_path=ckpt_path,
        ).run()


def unreadable_checkpoint(ckpt_path: object, error: BaseException) -> str:
    return f"ckpt_path: {ckpt_path} is not a readable grokkit checkpoint ({one_line(error)})"


def check_resumable(ckpt_path: Path, model: GrokTask, config: dict[str, Any]) -> None:
    """Refuse (one line) a checkpoint this config cannot continue: unreadable, of another
    model (parameter names and shapes), or, inside a run directory, trained on other data
    (the ``data`` and ``model.net`` sections of that run's config.yaml against this one's).
    Resuming continues in the checkpoint's run directory, so this runs before anything in it
    is written."""
    try:
        checkpoint = load_checkpoint(ckpt_path)
        state = checkpoint["state_dict"]
    except Exception as exc:  # noqa: BLE001 — any unreadable file is the same bad input
        raise ConfigError(unreadable_checkpoint(ckpt_path, exc)) from None
    ours = model.state_dict()
    for name in sorted(set(ours) | set(state)):
        theirs = tuple(state[name].shape) if name in state else None
        mine = tuple(ours[name].shape) if name in ours else None
        require(
            theirs == mine,
            f"ckpt_path: {ckpt_path} does not match this config: {name} has shape {theirs} "
            f"in the checkpoint and {mine} here (None: absent)",
        )
    run_dir = checkpoint_run_dir(ckpt_path)
    if run_dir is not None:
        earlier = read_config(run_dir)
        for section in (("data",), ("model", "net")):
            a, b = earlier, config
            for key in section:
                a, b = (a or {}).get(key), (b or {}).get(key)
            require(
                a == b,
                f"ckpt_path: {ckpt_path} belongs to a run with other {'.'.join(section)} "
                f"settings ({run_dir / 'config.yaml'}); resume with that config, or start a "
                f"new run without --ckpt_path",
            )


def config_stem(argv: list[str]) -> str:
    """The name of the last --config file on the command line ("run" if none)."""
    stem = "run"
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            stem = Path(argv[i + 1]).stem
        elif arg.startswith("--config="):
            stem = Path(arg.split("=", 1)[1]).stem
    return stem


def make_cli(argv: list[str] | None, run: bool = True) -> GrokkitCLI:
    """Parse ``argv`` (``fit|validate|test ...``), build model, data and trainer and, with
    ``run``, execute the subcommand."""
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
    quiet_third_party_noise()
    logs = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.WARNING)
    try:
        make_cli(argv, run=False)
    except Exception as exc:
        cause = user_error(exc)
        if cause is None:
            raise
        raise ConfigError(one_line(cause)) from None
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)
