"""Argument handling for ``grokkit sweep`` and ``grokkit agent``."""

import argparse
from pathlib import Path

from grokkit.console import error, say
from grokkit.errors import ConfigError, require
from grokkit.outcome import EXIT_CODES


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``grokkit: error:`` line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        error(f"{self.prog.split()[-1]}: {message}")
        raise SystemExit(EXIT_CODES["bad_input"])


def _gpu_list(text: str) -> list[str]:
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise argparse.ArgumentTypeError(f"expected GPU indices such as 0,1,3, got {text!r}")
    return gpus


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def sweep_main(argv: list[str]) -> int:
    parser = _Parser(
        prog="grokkit sweep",
        description="Run a W&B sweep file (grid or random) on this machine, no W&B server: one "
        "grokkit fit process per run, results in runs/<sweep name>/<run>/. Rerunning the same "
        "command resumes: completed runs are skipped, interrupted ones resume.",
    )
    parser.add_argument(
        "sweep_file", help="a W&B sweep file, e.g. sweeps/e1_alpha_wd_grid_cpu.yaml"
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="runs at a time (default: one per GPU given, else 1)",
    )
    parser.add_argument(
        "--gpus",
        type=_gpu_list,
        default=[],
        help="GPU indices the workers are dealt over, e.g. 0,1,2,3",
    )
    parser.add_argument(
        "--count", type=_positive, default=None, help="number of runs (random method; caps a grid)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random method's sampling seed")
    parser.add_argument("--out", default=None, help="sweep directory (default runs/<name>)")
    parser.add_argument(
        "--vectorize",
        type=_positive,
        nargs="?",
        const=0,
        default=None,
        metavar="K",
        help="train compatible runs (same data and net, differing in alpha, lambda, eta, seeds) "
        "K at a time as one batched computation in one process (default K: as many as fit in "
        "memory); one batch per worker",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check every run and print the commands, train nothing",
    )
    args = parser.parse_args(argv)

    from grokkit.lightning_cli import check_fit_args
    from grokkit.sweep.executor import SweepExecutor
    from grokkit.sweep.spec import expand, load_sweep

    try:
        spec = load_sweep(args.sweep_file)
        runs = expand(spec, count=args.count, seed=args.seed)
        for run in runs:  # every run's arguments are checked before the first one starts
            try:
                check_fit_args(spec.fit_args(run))
            except ConfigError as exc:
                raise ConfigError(f"sweep file {spec.path}: run {run.name}: {exc}") from None
    except ConfigError as exc:
        error(exc)
        return EXIT_CODES["bad_input"]
    out = Path(args.out) if args.out else Path("runs") / spec.name
    if args.dry_run:
        for run in runs:
            print(f"{run.name}: grokkit fit {' '.join(spec.fit_args(run))}")
        say(f"{len(runs)} runs checked; nothing trained (--dry-run)", who="grokkit sweep")
        return EXIT_CODES["completed"]
    workers = args.workers or max(1, len(args.gpus))
    batches = None
    if args.vectorize is not None:
        from grokkit.sweep.vectorize import plan_batches

        limit = args.vectorize or None
        batches = plan_batches(spec, runs, limit, workers, gpu=bool(args.gpus))
    executor = SweepExecutor(spec, runs, out, workers=workers, gpus=args.gpus, batches=batches)
    return executor.run()


def agent_main(argv: list[str]) -> int:
    parser = _Parser(
        prog="grokkit agent",
        description="Start W&B sweep agents (wandb agent --forward-signals), one per listed "
        "GPU, each seeing only its GPU. Create the sweep first with `wandb sweep FILE`.",
    )
    parser.add_argument("sweep_id", help="ENTITY/PROJECT/SWEEP_ID as printed by wandb sweep")
    parser.add_argument("--gpus", type=_gpu_list, required=True, help="e.g. 0,1,2,3")
    parser.add_argument("--per-gpu", type=_positive, default=1, help="agents per GPU (default 1)")
    parser.add_argument(
        "--count",
        type=_positive,
        default=None,
        help="runs per agent before it exits (default: until the sweep is done)",
    )
    args = parser.parse_args(argv)
    try:
        require(
            "/" not in args.sweep_id.strip("/") or args.sweep_id.count("/") == 2,
            f"sweep id {args.sweep_id!r}: expected SWEEP_ID or ENTITY/PROJECT/SWEEP_ID",
        )
    except ConfigError as exc:
        error(exc)
        return EXIT_CODES["bad_input"]

    from grokkit.sweep.agents import run_agents

    return run_agents(args.sweep_id, args.gpus, per_gpu=args.per_gpu, count=args.count)
