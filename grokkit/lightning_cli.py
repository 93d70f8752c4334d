"""``grokkit fit|validate|test``: the LightningCLI parser, its checks, and the hand-off of a fit
to ``grokkit.session.FitSession``."""

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from grokkit.callbacks import PhaseDetector, Snapshots
from grokkit.console import error, one_line, say
from grokkit.data.full_batch import FullBatchDataModule
from grokkit.errors import ConfigError, require, user_error
from grokkit.lightning_adapter import load_checkpoint
from grokkit.outcome import EXIT_CODES
from grokkit.preflight import (
    check_against_data,
    check_config_files,
    check_run_dir,
    check_seed,
    check_trainer,
)
from grokkit.rundir import (
    CONFIG,
    checkpoint_run_dir,
    read_config,
    read_summary,
    requested_run_dir,
)
from grokkit.session import CHECKPOINT_EVERY, FitSession
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
    # a user's ModelCheckpoint under GrokTask's manual optimization saves the state at the
    # evaluation row, which is what it should save; Lightning warns of a pre-step state
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


class GrokkitCLI(LightningCLI):
    """LightningCLI with grokkit's run directory, W&B settings and phase detector."""

    def __init__(self, *args: Any, argv: list[str] | None = None, **kwargs: Any) -> None:
        self.argv = argv
        self.exit_code = 0
        self.continue_run = False  # --ckpt_path=last: continue the run in its own directory
        super().__init__(*args, args=argv, **kwargs)

    @property
    def default_name(self) -> str:
        return config_stem(sys.argv[1:] if self.argv is None else self.argv)

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the checkpoint's hyperparameters into the config here, first of
        all: an unreadable file is one line of bad input, not a traceback. ``last`` is resolved
        here to the run directory's newest checkpoint (None for a fit: start from scratch)."""
        subcommand = self.config.get("subcommand")
        section = self.config[subcommand] if subcommand else None
        if section is not None and section.get("ckpt_path") == "last":
            self.continue_run = True
            last = requested_run_dir(section.get("run_dir"), self.default_name)
            last = last / "checkpoints" / "last.ckpt"
            require(
                last.is_file() or subcommand == "fit",
                f"ckpt_path=last: no checkpoint at {last} (give --run_dir, or the run's "
                f"config.yaml as --config)",
            )
            section.ckpt_path = str(last) if last.is_file() else None
        try:
            super()._parse_ckpt_path()
        except Exception as exc:  # noqa: BLE001 — whatever the reader raises, the file is bad
            ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
            raise ConfigError(unreadable_checkpoint(ckpt_path, exc)) from None

    def before_validate(self) -> None:
        self._check_evaluated_checkpoint("validate")
        self._say_if_untrained("validate")

    def before_test(self) -> None:
        self._check_evaluated_checkpoint("test")
        self._say_if_untrained("test")

    def _check_evaluated_checkpoint(self, command: str) -> None:
        """A missing checkpoint, or one of another model, is one line (Lightning's loader
        raises a traceback)."""
        ckpt_path = self.config[command].get("ckpt_path")
        if ckpt_path is not None:
            require(Path(ckpt_path).is_file(), f"ckpt_path: no checkpoint file at {ckpt_path}")
            check_checkpoint_matches(Path(ckpt_path), self.model)

    def _set_seed(self) -> None:
        check_seed(self._get(self.config, "seed_everything"))
        super()._set_seed()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """A trainer setting Lightning refuses (beyond check_trainer's) is one line."""
        try:
            return super().instantiate_trainer(**kwargs)
        except ConfigError:
            raise
        except (MisconfigurationException, ValueError) as exc:
            raise ConfigError(f"trainer: {one_line(exc)}") from None

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
        parser.add_argument(
            "--checkpoint_every",
            type=float,
            default=CHECKPOINT_EVERY,
            help="Seconds between saves of checkpoints/last.ckpt at most (the work a SIGKILL can "
            "lose); cheap saves are made at every evaluation point",
        )
        parser.add_class_arguments(WandbSettings, "wandb")
        parser.add_lightning_class_args(PhaseDetector, "phases")
        parser.add_lightning_class_args(Snapshots, "snapshots")

    def before_instantiate_classes(self) -> None:
        """A callback class given twice is bad input (Lightning would fail on its state key)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        kinds = ["PhaseDetector", "Snapshots"]  # always added, configured by phases.*, snapshots.*
        for callback in config.trainer.get("callbacks") or []:
            class_path = getattr(callback, "class_path", None) or str(callback)
            kinds.append(class_path.rsplit(".", 1)[-1])
        check_trainer(config.trainer)
        if "ModelCheckpoint" in kinds:  # a user's own (grokkit's run directory needs none)
            config.trainer.enable_checkpointing = True
        if config.trainer.get("enable_progress_bar") and not any("ProgressBar" in k for k in kinds):
            # Lightning's own bar counts chunks (a batch is a chunk of gradient steps)
            bar = Namespace(class_path="grokkit.callbacks.StepProgressBar", init_args=Namespace())
            config.trainer.callbacks = [*(config.trainer.get("callbacks") or []), bar]
        twice = sorted({k for k in kinds if kinds.count(k) > 1})
        require(
            not twice,
            f"trainer.callbacks: {', '.join(twice)} given twice (each callback class may appear "
            f"once; --trainer.callbacks=[] clears the config's list before adding)",
        )

    def instantiate_classes(self) -> None:
        """A callback (or logger) whose optional package is not installed is one line."""
        try:
            super().instantiate_classes()
        except Exception as exc:
            missing: BaseException | None = exc
            while missing is not None and not isinstance(missing, ModuleNotFoundError):
                missing = missing.__cause__ or missing.__context__
            if missing is None:
                raise
            raise ConfigError(f"trainer: {one_line(missing)}") from None

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
        require(
            config.checkpoint_every > 0,
            f"checkpoint_every must be > 0 seconds, got {config.checkpoint_every}",
        )
        saved = config.clone()

        def dump_config(run_dir: Path) -> str:
            saved.run_dir, saved.ckpt_path = str(run_dir), None
            return self._parser("fit").dump(saved, skip_none=False)

        # before anything is written into the run directory this fit would continue
        owner = checkpoint_run_dir(ckpt_path) if ckpt_path is not None else None
        target = owner or requested_run_dir(config.run_dir, self.default_name)
        if ckpt_path is not None:
            check_checkpoint_matches(Path(ckpt_path), model)
        if owner is not None or (ckpt_path is None and self.continue_run):
            check_continuable(target, yaml.safe_load(dump_config(Path("."))))
        check_run_dir(target)
        check_against_data(model, datamodule, self.trainer.callbacks)
        self.exit_code = FitSession(
            self.trainer,
            model,
            datamodule,
            run_dir=config.run_dir,
            default_name=self.default_name,
            dump_config=dump_config,
            config=saved.as_dict(),
            wandb=self.config_init["fit"]["wandb"],
            ckpt_path=ckpt_path,
            continue_run=self.continue_run,
            checkpoint_every=config.checkpoint_every,
        ).run()


def unreadable_checkpoint(ckpt_path: object, error: BaseException) -> str:
    return f"ckpt_path: {ckpt_path} is not a readable grokkit checkpoint ({one_line(error)})"


def check_checkpoint_matches(ckpt_path: Path, model: GrokTask) -> None:
    """Refuse (one line) a checkpoint this config's model cannot load: unreadable, or of
    another model (parameter names and shapes)."""
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


# The limits a completed run can be continued past (trainer.max_time: a budget, compared as given)
LIMITS = (("trainer", "max_steps"), ("model", "max_flow_time"), ("trainer", "max_time"))


def check_continuable(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse (one line) to continue in ``run_dir`` what is not this run: a directory that is
    not a grokkit run, a run trained on other data or another net (the ``data`` and
    ``model.net`` sections of its config.yaml against ``config``), or a completed run whose
    limits (max_steps, max_flow_time, max_time) this config does not raise."""
    if not (run_dir / CONFIG).is_file():
        require(
            not (run_dir.exists() and any(run_dir.iterdir())),
            f"run_dir: {run_dir} is not a grokkit run directory (no {CONFIG}) and not empty; "
            f"refusing to continue a run there",
        )
        return
    earlier = read_config(run_dir)
    for section in (("data",), ("model", "net")):
        require(
            _get(earlier, section) == _get(config, section),
            f"ckpt_path: {run_dir} holds a run with other {'.'.join(section)} settings "
            f"({run_dir / CONFIG}); continue it with that config, or start a new run "
            f"without --ckpt_path",
        )
    summary = read_summary(run_dir)
    if summary.get("status") == "completed":
        require(
            any(_raised(_get(earlier, key), _get(config, key)) for key in LIMITS),
            f"ckpt_path: the run in {run_dir} completed ({summary.get('steps')} steps); raise "
            f"--trainer.max_steps (or model.max_flow_time) to continue it",
        )


def _get(config: dict[str, Any] | None, keys: tuple[str, ...]) -> Any:
    for key in keys:
        config = (config or {}).get(key)
    return config


def _raised(before: Any, now: Any) -> bool:
    """Whether a limit now lets a run go further than before (None: no limit)."""
    if before == now:
        return False
    if isinstance(before, int | float) and isinstance(now, int | float):
        return now > before
    return before is not None or now is None


def config_stem(argv: list[str]) -> str:
    """The name of the last --config file on the command line ("run" if none)."""
    files = config_files(argv)
    return files[-1].stem if files else "run"


def config_files(argv: list[str]) -> list[Path]:
    """The files given with ``--config FILE``, ``--config=FILE`` or ``-c FILE``."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return files


def refuse_environment_values(argv: list[str]) -> None:
    """``${oc.env:VAR}`` is refused: the parser resolves it, and the value (a token, a path)
    would be written into config.yaml and the W&B run config."""
    for where, text in [("command line", " ".join(argv))] + [
        (str(f), f.read_text(errors="replace")) for f in config_files(argv) if f.is_file()
    ]:
        require(
            "oc.env" not in text,
            f"{where}: ${{oc.env:...}} is not supported (its value would be written into the "
            f"run's config.yaml and W&B config); pass the value itself, e.g. --key=$VAR",
        )


def make_cli(argv: list[str] | None, run: bool = True) -> GrokkitCLI:
    """Parse ``argv`` (``fit|validate|test ...``), build model, data and trainer and, with
    ``run``, execute the subcommand."""
    refuse_environment_values(sys.argv[1:] if argv is None else argv)
    check_config_files(config_files(sys.argv[1:] if argv is None else argv))
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


def build_without_training(argv: list[str]) -> GrokkitCLI:
    """Parse ``grokkit fit`` arguments and build the model, data and trainer without training,
    with Lightning's info lines (e.g. "Seed set to") held back: nothing runs."""
    quiet_third_party_noise()
    logs = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.WARNING)
    try:
        return make_cli(argv, run=False)
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)


def check_fit_args(argv: list[str]) -> None:
    """``build_without_training`` as a sweep's preflight: a bad input raises ConfigError with
    its one-line message."""
    try:
        build_without_training(argv)
    except Exception as exc:
        cause = user_error(exc)
        if cause is None:
            raise
        raise ConfigError(one_line(cause)) from None


def run_command(args: list[str]) -> int:
    """``grokkit fit|validate|test ARGS``: the command's exit code; bad input is one line and 2."""
    quiet_third_party_noise()
    try:
        cli = make_cli(args)
    except Exception as exc:
        cause = user_error(exc)
        if cause is None:
            raise
        hint = ""
        if "required" in str(cause) and ("model.net" in str(cause) or "fit.data" in str(cause)):
            hint = " (a variant config runs on its base: --config BASE.yaml --config VARIANT.yaml)"
        error(f"{one_line(cause)}{hint}")
        return EXIT_CODES["bad_input"]
    return cli.exit_code
