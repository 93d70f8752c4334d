"""W&B logging that never needs the network unless the user asks for it."""

import netrc
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
    """

    project: str = "grokkit"
    entity: str | None = None
    mode: WandbMode | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)


def _api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_mode(settings: WandbSettings) -> str:
    return (
        os.environ.get("WANDB_MODE")
        or settings.mode
        or ("online" if _api_key_configured() else "offline")
    )


def make_wandb_logger(settings: WandbSettings, run_dir: Path, config: dict[str, Any]):
    """A WandbLogger writing under ``run_dir``, or None when W&B is disabled.

    The run id is kept in ``run_dir/wandb_id`` so that a resumed fit continues the same W&B run.
    """
    mode = resolve_mode(settings)
    if mode == "disabled":
        return None
    from lightning.pytorch.loggers import WandbLogger  # slow import: only when used

    id_file = run_dir / "wandb_id"
    if not id_file.exists():
        id_file.write_text(uuid.uuid4().hex[:8])
    return WandbLogger(
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
    )
