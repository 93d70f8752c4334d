"""Every config in configs/ parses, instantiates and trains a few steps.

A config is either full (runnable alone) or a variant: only the keys it changes on top of a full
base, composed as the command in its header says, `grokkit fit --config BASE --config VARIANT`
(the later --config wins). A variant is smoke-tested through exactly that command, the base
alone through its own file.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from grokkit.cli import main

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
_COMMAND = re.compile(r"^#\s*grokkit fit ((?:--config \S+\s*)+)$", re.MULTILINE)


def _load(config: Path) -> dict[str, Any]:
    return yaml.safe_load(config.read_text()) or {}


def is_full(config: Path) -> bool:
    """Runnable alone: it names the net and the data set."""
    body = _load(config)
    return "data" in body and "net" in (body.get("model") or {})


def config_chain(config: Path) -> list[Path]:
    """The config files that run ``config``, in command-line order: itself if full, else the
    `grokkit fit --config ... --config <config>` line of its header (paths from the repo root)."""
    if is_full(config):
        return [config]
    for match in _COMMAND.finditer(config.read_text()):
        chain = [REPO / path for path in match.group(1).split()[1::2]]
        if chain[-1] == config:
            return chain
    raise AssertionError(
        f"{config.relative_to(REPO)} is not runnable alone (no model.net or data) and its header "
        f"has no `#   grokkit fit --config BASE --config {config.relative_to(REPO)}` line"
    )


def config_args(config: Path) -> list[str]:
    """The `--config` arguments of ``grokkit fit`` for ``config`` (its base first if a variant)."""
    return [arg for path in config_chain(config) for arg in ("--config", str(path))]


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple, Any]]:
    out: list[tuple[tuple, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _leaves(value, (*prefix, key))
        else:
            out.append(((*prefix, key), value))
    return out


def _at(tree: dict[str, Any], key: tuple[str, ...]) -> Any:
    for part in key:
        tree = tree[part]
    return tree


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_config_runs_a_few_steps(config: Path):
    chain = config_chain(config)
    # Shrink only the evaluation set (paper-scale test sets are GBs); the model and the
    # training set stay exactly as configured.
    n_test = any("n_test" in (_load(c).get("data") or {}).get("init_args", {}) for c in chain)
    shrink = ["--data.n_test=64"] if n_test else []
    assert main(["fit", *config_args(config), "--trainer.max_steps=3", *shrink]) == 0
    run = Path("runs") / config.stem  # named after the last --config
    assert (run / "summary.json").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    if len(chain) > 1:  # every key the variant sets won over its base
        for key, value in _leaves(_load(config)):
            if key != ("trainer", "max_steps"):
                assert _at(saved, key) == value, (key, value)


def test_variants_compose_onto_full_bases():
    variants = [c for c in CONFIGS if not is_full(c)]
    assert len(variants) >= 13  # the Fig. 2a/2b/2c panels and the CPU 2b/2c trend files
    for variant in variants:
        *bases, last = config_chain(variant)
        assert last == variant and bases and all(b.is_file() and is_full(b) for b in bases)


def test_sweeps_refer_to_full_configs():
    """A sweep runs `grokkit fit --config X ${args}`: X must be a base, runnable alone."""
    for sweep in SWEEPS:
        command = _load(sweep)["command"]
        configs = [REPO / command[i + 1] for i, a in enumerate(command) if a == "--config"]
        assert configs and all(is_full(c) for c in configs), sweep.name


def test_base_interpolation_follows_a_value_the_variant_changes(tmp_path):
    """The base derives the net's size from the data (`p: ${....data.init_args.p}`): in the
    omegaconf+ parser mode that resolves after every --config is merged, so a variant that
    changes data.p resizes the net (in plain omegaconf mode it would stay at the base's 97)."""
    variant = tmp_path / "p11.yaml"
    variant.write_text("data:\n  init_args:\n    p: 11\n")
    base = REPO / "configs" / "cpu" / "e3_modular_grokking.yaml"
    argv = ["fit", "--config", str(base), "--config", str(variant), "--trainer.max_steps=1"]
    assert main(argv) == 0
    saved = yaml.safe_load((Path("runs") / "p11" / "config.yaml").read_text())
    assert saved["data"]["init_args"]["p"] == 11
    assert saved["model"]["net"]["init_args"]["p"] == 11


def test_composed_run_config_reproduces_it_alone():
    """runs/<variant>/config.yaml is the composed config, resolved: run alone it trains the same."""
    variant = REPO / "configs" / "cpu" / "e3_alpha100.yaml"
    assert main(["fit", *config_args(variant), "--trainer.max_steps=3"]) == 0
    first = Path("runs") / "e3_alpha100"
    assert main(["fit", "--config", str(first / "config.yaml")]) == 0
    second = Path("runs") / "e3_alpha100-2"

    def without_run_dir(run: Path) -> dict[str, Any]:
        saved = yaml.safe_load((run / "config.yaml").read_text())
        saved.pop("run_dir")
        return saved

    assert without_run_dir(first) == without_run_dir(second)
    assert without_run_dir(first)["model"]["alpha"] == 100
    assert (first / "metrics.csv").read_text() == (second / "metrics.csv").read_text()


def test_configs_exist():
    names = {c.relative_to(REPO).as_posix() for c in CONFIGS}
    assert {
        "configs/quickstart.yaml",
        "configs/paper/e1_sparse_grokking.yaml",
        "configs/paper/e3_modular_fig2.yaml",
        "configs/cpu/e3_modular_grokking.yaml",
    } <= names
