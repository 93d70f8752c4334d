"""The ``grokkit`` command: parses the command name and hands the rest to its module."""

import sys

from grokkit.console import error, say
from grokkit.outcome import EXIT_CODES
from grokkit.signals import on_stop_signals, signal_name

USAGE = """usage: grokkit COMMAND [options]

commands:
  fit       train a model: grokkit fit --config FILE.yaml [--section.key=value ...]
  validate  evaluate a config (optionally a checkpoint, --ckpt_path) on the train and test sets
  test      same as validate, reported as test metrics
  sweep     run a W&B sweep file on this machine, no server: grokkit sweep FILE --workers N
  agent     one `wandb agent --forward-signals` per GPU: grokkit agent SWEEP_ID --gpus 0,1
  report    table and figures for a run directory or a sweep: grokkit report PATH
  figures   every figure panel of the paper at its own scale: grokkit figures [--only 1a,2b]

`grokkit COMMAND --help` lists every option of a command; `grokkit --version` the version.
"""
LIGHTNING_COMMANDS = ("fit", "validate", "test")


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. SIGTERM before a command installs its own handling (a fit
    while it starts up, a sweep's run killed by its executor) interrupts like Ctrl-C: one line and
    exit 130 (interrupted, which a sweep resumes), not a traceback or 143 (failed)."""
    try:  # (off the main thread on_stop_signals installs nothing: only it gets signals)
        with on_stop_signals(_interrupt):
            return _run_command(argv)
    except KeyboardInterrupt as exc:
        say(f"interrupted ({exc or 'SIGINT'})", to_stderr=True)
        return EXIT_CODES["interrupted"]


def _interrupt(signum: int) -> None:
    raise KeyboardInterrupt(signal_name(signum))


def _run_command(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return EXIT_CODES["completed"] if args else EXIT_CODES["bad_input"]
    command, rest = args[0], args[1:]
    if command in ("-V", "--version"):
        from importlib.metadata import version  # (the package's, set from grokkit.__version__)

        print(f"grokkit {version('grokkit')}")
        return EXIT_CODES["completed"]
    if command == "report":
        from grokkit.report.cli import report_main

        return report_main(rest)
    if command == "figures":
        from grokkit.figures import figures_main

        return figures_main(rest)
    if command == "ensemble":  # internal: the members of a vectorized sweep's batch
        from grokkit.ensemble import ensemble_main

        return ensemble_main(rest)
    if command in ("sweep", "agent"):
        from grokkit.sweep.cli import agent_main, sweep_main

        return (sweep_main if command == "sweep" else agent_main)(rest)
    if command not in LIGHTNING_COMMANDS:
        error(
            f"unknown command {command!r} "
            "(expected fit, validate, test, sweep, agent, report or figures)"
        )
        return EXIT_CODES["bad_input"]
    return _lightning_main(args)


def _lightning_main(args: list[str]) -> int:
    from grokkit.lightning_cli import run_command

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
