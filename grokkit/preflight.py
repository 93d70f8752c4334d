"""Checks of a fit's input made before anything is written, each failing as one ConfigError line
that names the key or file: config files, trainer settings Lightning would refuse with a
traceback, the seed, the run directory, and what only the data's size can tell."""

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from grokkit.console import say
from grokkit.errors import ConfigError, require

MAX_SEED = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces


def check_config_files(files: Iterable[Path]) -> None:
    """Each ``--config`` file that exists is UTF-8 YAML holding a mapping (model:, data:, ...).
    Files that do not exist are left to the parser, which names them."""
    for path in files:
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"--config {path}: not a text (UTF-8) file") from None
        try:
            content = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--config {path}: not valid YAML{_where(error)}") from None
        require(
            isinstance(content, dict),
            f"--config {path}: expected a mapping of sections (model:, data:, trainer:, ...), "
            f"got {'an empty file' if content is None else type(content).__name__}",
        )


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    return (f" at line {mark.line + 1}" if mark else "") + (f": {problem}" if problem else "")


def check_seed(seed: Any) -> None:
    """``seed_everything``: true (a random seed), false (none) or an integer numpy accepts;
    Lightning raises a traceback for the rest."""
    if isinstance(seed, bool):
        return
    require(
        isinstance(seed, int) and 0 <= seed <= MAX_SEED,
        f"seed_everything must be an integer from 0 to {MAX_SEED} (or true for a random "
        f"seed), got {seed!r}",
    )


def check_trainer(trainer: Any) -> None:
    """The ``trainer`` section's settings Lightning refuses with a traceback at construction."""
    max_steps = trainer.get("max_steps")
    require(
        max_steps is None or max_steps >= -1,
        f"trainer.max_steps must be a positive number of gradient steps, got {max_steps}",
    )
    check_accelerator(trainer.get("accelerator"))


def check_accelerator(name: Any) -> None:
    """A named accelerator exists and is available on this machine (gpu: cuda or mps)."""
    if not isinstance(name, str) or name == "auto":
        return  # an Accelerator object: Lightning checks it
    from lightning.pytorch.accelerators import AcceleratorRegistry

    known = AcceleratorRegistry.available_accelerators()
    choices = sorted({*known, "auto", "gpu"})
    require(
        name in choices,
        f"trainer.accelerator={name} is not an accelerator (expected one of {', '.join(choices)})",
    )
    available = sorted(n for n in known if AcceleratorRegistry[n]["accelerator"].is_available())
    wanted = ("cuda", "mps") if name == "gpu" else (name,)
    require(
        any(n in available for n in wanted),
        f"trainer.accelerator={name}: none on this machine (available: {', '.join(available)}; "
        f"auto uses the best one there is)",
    )


def check_run_dir(run_dir: Path) -> None:
    """The run directory can be created and written: the nearest folder on its path that
    exists is a folder this process may write to (not a file, not read-only)."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    require(existing.is_dir(), f"run_dir: cannot create {run_dir}: {existing} is a file")
    require(
        os.access(existing, os.W_OK | os.X_OK),
        f"run_dir: cannot create {run_dir}: {existing} is not writable (read-only folder or "
        f"file system)",
    )


def check_against_data(task: Any, datamodule: Any, callbacks: Iterable[Any]) -> None:
    """What only the data can tell, before a run directory is claimed: the net takes the
    data's inputs, and ``model.batch_size`` is at most the training set. An NTK probe larger
    than the training set is noted: the kernel is computed on all of it."""
    from grokkit.callbacks import NTKAlignment

    datamodule.setup("fit")  # built once: the fit's own setup finds the splits made
    for x, _ in datamodule.splits.values():
        task.net.check_input(x)
    n_train = len(datamodule.splits["train"][1])
    batch_size = task.hparams.batch_size
    require(
        batch_size is None or batch_size <= n_train,
        f"model.batch_size={batch_size} is more than the {n_train} training examples "
        f"(null: the full batch)",
    )
    for callback in callbacks:
        if isinstance(callback, NTKAlignment) and callback.probe_size > n_train:
            say(
                f"NTKAlignment.probe_size={callback.probe_size} is more than the {n_train} "
                f"training examples; the kernel is computed on all {n_train}",
                to_stderr=True,
            )
