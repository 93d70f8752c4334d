"""W&B logging that never needs the network unless the user asks for it."""

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

WandbMode = Literal["online", "offline", "disabled"]


@dataclass
class WandbSettings:
    """W&B options (the ``wandb:`` section of a config).

    Args:
        project: W&B project name.
        entity: W&B entity (user or team); None uses the account default.
        mode: "online", "offline" or "disabled". The WANDB_MODE environment variable wins; with
            neither set, runs are online when an API key is configured, else offline (files under
            the run directory, upload later with ``wandb sync``).
        group: W&B group, e.g. a sweep name.
        tags: W&B tags.
        log_files: at the end, log curves.png as an image and the checkpoints (last.ckpt and
            the snapshots) as a model artifact.
    """

    project: str = "grokkit"
    entity: str | None = None
    mode: WandbMode | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    log_files: bool = True


def _api_key_configured() -> bool:
    """wandb's own credential lookup for the host it is set up for (``WANDB_BASE_URL`` or its
    settings files, so a self-hosted server counts): an API key in the environment, in this
    session or in ~/.netrc. Nothing is verified over the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    from wandb.sdk import wandb_setup  # slow import: only when the mode is not given
    from wandb.sdk.lib import wbauth

    # (the environment first: the settings singleton may predate a change of it)
    host = os.environ.get("WANDB_BASE_URL") or wandb_setup.singleton().settings.base_url
    return (
        wbauth.session_credentials(host=host) is not None
        or wbauth.read_netrc_auth(host=host) is not None
    )


def resolve_mode(settings: WandbSettings) -> str:
    return (
        os.environ.get("WANDB_MODE")
        or settings.mode
        or ("online" if _api_key_configured() else "offline")
    )


def wandb_row(metrics: dict[str, float], weight_decay: float) -> dict[str, float]:
    """A metrics.csv row as W&B gets it: ``time`` is ``flow_time`` (not wall-clock time), with
    ``lambda_t`` = λ·t beside it (λ > 0); ``step`` is W&B's own step, not a column."""
    row = {("flow_time" if k == "time" else k): v for k, v in metrics.items() if k != "step"}
    if weight_decay > 0 and "flow_time" in row:
        row["lambda_t"] = weight_decay * row["flow_time"]
    return row


def make_wandb_logger(
    settings: WandbSettings,
    run_dir: Path,
    config: dict[str, Any],
    weight_decay: float = 0.0,
    shared_process: bool = False,
):
    """A WandbLogger writing under ``run_dir``, or None when W&B is disabled.
    ``shared_process``: other runs log from this process too (the members of an ensemble).

    The run id is kept in ``run_dir/wandb_id`` so that a resumed fit continues the same W&B run.
    """
    mode = resolve_mode(settings)
    if mode == "disabled":
        return None
    from lightning.pytorch.loggers import WandbLogger  # slow import: only when used

    class GrokkitWandbLogger(WandbLogger):
        """Rows at W&B step = gradient step (so a resumed run, offline too, continues its
        history where its checkpoint was, not at 0), with flow time and λt as x-axes."""

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            # Lightning makes trainer/global_step every chart's x-axis: log it as the step
            row = wandb_row(metrics, weight_decay)
            self.experiment.log({**row, "trainer/global_step": step}, step=step)

        axes_defined = False

        @property
        def experiment(self) -> Any:
            run = super().experiment
            if not self.axes_defined:
                self.axes_defined = True
                for axis in ("flow_time", "lambda_t", "log10_time"):
                    run.define_metric(axis, summary="last")
            return run

    id_file = run_dir / "wandb_id"
    if not id_file.exists():
        id_file.write_text(uuid.uuid4().hex[:8])
    return GrokkitWandbLogger(
        project=settings.project,
        entity=settings.entity,
        group=settings.group,
        tags=settings.tags or None,
        name=run_dir.name,
        save_dir=str(run_dir),
        id=id_file.read_text().strip(),
        resume="allow",
        mode=mode,
        config=config,
        # the members of an ensemble (grokkit.ensemble) are W&B runs of one process, side by side
        **({"reinit": "create_new"} if shared_process else {}),
    )


def finish_wandb_run(
    experiment: Any,
    summary: dict[str, Any],
    exit_code: int,
    run_dir: Path,
    files: WandbSettings,
    weight_decay: float,
) -> None:
    """The run summary (W&B has no null: a phase not reached is absent, except that a run that
    never grokked gets ``grokked: false`` and its final time as a censored ``grokking_time``, so
    a sweep's optimizer sees failures), curves.png as an image and the checkpoints as a model
    artifact (``wandb.log_files``), then finish."""
    flat = wandb_row({k: v for k, v in summary.items() if not isinstance(v, dict)}, weight_decay)
    flat = {k: v for k, v in flat.items() if v is not None}
    flat.update({f"thresholds/{k}": v for k, v in summary["thresholds"].items()})
    for name, metrics in summary.get("references", {}).items():
        flat.update({f"references/{name}/{k}": v for k, v in metrics.items()})
    flat["grokked"] = summary.get("grokking_time") is not None
    if not flat["grokked"] and "flow_time" in flat:
        flat["grokking_time"] = flat["flow_time"]  # censored: not grokked by the end
    experiment.summary.update(flat)
    if files.log_files:
        import wandb

        if (run_dir / "curves.png").is_file():
            image = wandb.Image(str(run_dir / "curves.png"))
            experiment.log({"curves": image}, step=summary["steps"])
        checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
        if checkpoints:
            artifact = wandb.Artifact(f"checkpoints-{experiment.id}", type="model")
            for path in checkpoints:
                artifact.add_file(str(path))
            experiment.log_artifact(artifact)
    experiment.finish(exit_code=exit_code)
