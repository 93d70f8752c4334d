"""Every config in configs/ parses, instantiates and trains a few steps."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from grokkit.cli import main

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_config_runs_a_few_steps(config: Path):
    data_args = yaml.safe_load(config.read_text())["data"]["init_args"]
    # Shrink only the evaluation set (paper-scale test sets are GBs); the model and the
    # training set stay exactly as configured.
    shrink = ["--data.n_test=64"] if "n_test" in data_args else []
    assert main(["fit", "--config", str(config), "--trainer.max_steps=3", *shrink]) == 0
    run = Path("runs") / config.stem
    assert (run / "summary.json").is_file()


def test_configs_exist():
    names = {c.relative_to(REPO).as_posix() for c in CONFIGS}
    assert {"configs/quickstart.yaml", "configs/paper/e1_sparse_grokking.yaml"} <= names
