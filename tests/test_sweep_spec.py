"""Sweep files: validation (one clear line before any run starts), grid/random expansion, and
agent compatibility: every file in sweeps/ rendered exactly as `wandb agent` renders it, then
parsed and instantiated by the grokkit CLI (no network)."""

import math
from pathlib import Path

import pytest
from conftest import REPO
from wandb.sdk.launch.sweeps import utils as wandb_sweep_utils

from grokkit.cli import main
from grokkit.errors import ConfigError
from grokkit.lightning_cli import check_fit_args
from grokkit.sweep import expand, load_sweep

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))

# The block-style command every sweep file uses ({config} is filled in by write()).
COMMAND = """command:
  - grokkit
  - fit
  - --config
  - {config}
  - ${{args}}
"""

GOOD = """
name: demo
method: grid
parameters:
  model.alpha:
    values: [16, 256]
  model.weight_decay:
    values: [0.01, 0.02, 0.04]
  trainer.max_steps:
    value: 100
"""
GOOD += COMMAND


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text.format(config=REPO / "configs" / "quickstart.yaml"))
    return path


def test_grid_is_the_product_in_file_order(tmp_path):
    runs = expand(load_sweep(write(tmp_path, GOOD)))
    assert [(r.params["model.alpha"], r.params["model.weight_decay"]) for r in runs] == [
        (16, 0.01),
        (16, 0.02),
        (16, 0.04),
        (256, 0.01),
        (256, 0.02),
        (256, 0.04),
    ]
    assert runs[0].name == "000-alpha=16_weight_decay=0.01"
    assert len({r.name for r in runs}) == 6
    assert runs[4].args() == [
        "--model.alpha=256",
        "--model.weight_decay=0.02",
        "--trainer.max_steps=100",
    ]
    assert len(expand(load_sweep(write(tmp_path, GOOD)), count=4)) == 4


RANDOM = """
method: random
parameters:
  model.alpha: {{distribution: log_uniform_values, min: 10, max: 1000}}
  model.weight_decay: {{distribution: uniform, min: 0.01, max: 0.05}}
  seed_everything: {{min: 0, max: 9}}
  model.loss: {{values: [logistic]}}
"""
RANDOM += COMMAND


def test_random_draws_are_seeded_and_within_their_distributions(tmp_path):
    spec = load_sweep(write(tmp_path, RANDOM))
    runs = expand(spec, count=50, seed=3)
    assert [r.params for r in runs] == [r.params for r in expand(spec, count=50, seed=3)]
    assert [r.params for r in runs] != [r.params for r in expand(spec, count=50, seed=4)]
    alphas = [r.params["model.alpha"] for r in runs]
    assert all(10 <= a <= 1000 for a in alphas)
    # log-uniform: about half the draws below the geometric midpoint 100
    assert 15 <= sum(a < 100 for a in alphas) <= 35
    assert all(0.01 <= r.params["model.weight_decay"] <= 0.05 for r in runs)
    seeds = [r.params["seed_everything"] for r in runs]
    assert all(isinstance(s, int) and 0 <= s <= 9 for s in seeds)  # int_uniform inferred
    assert len(set(seeds)) > 3
    with pytest.raises(ConfigError, match="random method needs --count"):
        expand(spec)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("parameters:", "paramters:"),
            "unknown key 'paramters' (did you mean 'parameters'?)",
        ),
        (lambda t: t.replace("method: grid", "method: grdi"), "method: expected one of"),
        (
            lambda t: t.replace("values: [16, 256]", "vales: [16, 256]"),
            "parameters.model.alpha: unknown key 'vales' (did you mean 'values'?)",
        ),
        (
            lambda t: t.replace("values: [16, 256]", "values: 16"),
            "parameters.model.alpha.values: expected a non-empty list",
        ),
        (lambda t: t.replace("  - ${{args}}\n", ""), "command: must contain ${args}"),
        (
            lambda t: t.replace(
                "values: [16, 256]", "distribution: uniform\n    min: 1\n    max: 9"
            ),
            "the grid method needs value or values",
        ),
        (lambda t: t.split("parameters:")[0] + "command: [grokkit]\n", "missing 'parameters'"),
        (
            lambda t: t.replace("method: grid", "method: grid\nrun_cap: 2.5"),
            "run_cap: expected a positive integer",
        ),
        (
            lambda t: t.replace("model.alpha:\n", "model:\n    parameters:\n      alpha:\n"),
            "nested parameters are not supported",
        ),
        (
            lambda t: t.replace("  - grokkit\n  - fit\n", "  - python\n  - train.py\n"),
            "expected a `grokkit fit --config FILE ${args}` command",
        ),
        # values the fit CLI itself rejects, found by parsing every run before any starts
        (
            lambda t: t.replace("value: 100", "value: 100.0"),
            'run 000-alpha=16_weight_decay=0.01: Parser key "trainer.max_steps": Expected a '
            "<class 'int'>. Got value: 100.0",
        ),
        (
            lambda t: t.replace("model.weight_decay:", "model.weight_dcay:"),
            "run 000-alpha=16_weight_dcay=0.01: unrecognized arguments: --model.weight_dcay=0.01",
        ),
        (
            lambda t: t.replace("values: [16, 256]", "values: [16, -1]"),
            "run 003-alpha=-1_weight_decay=0.01: model.alpha (init scale) must be > 0, got -1",
        ),
    ],
)
def test_bad_sweep_file_is_one_line_before_any_run(tmp_path, capsys, edit, message):
    path = tmp_path / "bad.yaml"
    path.write_text(edit(GOOD).format(config=REPO / "configs" / "quickstart.yaml"))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("grokkit: error: sweep file")
    assert message in err
    assert not Path("runs").exists()


def test_flow_list_command_is_a_yaml_error_in_one_line(tmp_path, capsys):
    path = tmp_path / "flow.yaml"
    path.write_text(
        "method: grid\nparameters:\n  model.alpha: {values: [1]}\n"
        "command: [grokkit, fit, --config, x.yaml, ${args}]\n"
    )
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid YAML at line 4" in err


def test_missing_sweep_file_and_bad_options(capsys):
    assert main(["sweep", "nope.yaml"]) == 2
    assert "sweep file nope.yaml: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "x.yaml", "--gpus", "0,a"])
    assert exit_info.value.code == 2
    assert "expected GPU indices such as 0,1,3, got '0,a'" in capsys.readouterr().err


def agent_command(spec, params) -> list[str]:
    """The command `wandb agent` would run for these parameters, built with W&B's own code
    (wandb/wandb_agent.py: macros replaced by create_sweep_command_args' lists)."""
    command = {"args": {k: {"value": v} for k, v in params.items()}, "program": spec.program}
    sweep_vars = wandb_sweep_utils.create_sweep_command_args(command)
    sweep_vars.update(interpreter=["python"], program=[spec.program], env=["/usr/bin/env"])
    argv: list[str] = []
    for chunk in wandb_sweep_utils.create_sweep_command(list(spec.command)):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += sweep_vars.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_sweep_file_runs_unchanged_under_the_wandb_agent(path, monkeypatch):
    monkeypatch.chdir(REPO)  # the agent runs from the repository root
    spec = load_sweep(path)
    assert spec.metric.get("name") == "grokking_time"
    runs = expand(spec, count=6 if spec.method == "random" else None)
    assert len(runs) >= 3
    for run in runs:
        argv = agent_command(spec, run.params)
        assert argv == spec.command_for(run, "python")
        assert argv[:2] == ["grokkit", "fit"]
        check_fit_args(argv[2:])  # parsed and instantiated: model, data and trainer


def test_paper_grids_cover_figure_2():
    def grid(name: str, key: str) -> list:
        return load_sweep(REPO / "sweeps" / name).parameters[key]["values"]

    assert grid("e3_fig2b_init_scale_paper.yaml", "model.alpha") == [1, 10, 100]
    assert grid("e3_fig2c_weight_decay_paper.yaml", "model.weight_decay") == [
        0.0001,
        0.0003,
        0.001,
        0.003,
    ]
    assert all(isinstance(a, int) for a in grid("e1_alpha_wd_grid_cpu.yaml", "model.alpha"))
    assert (
        math.prod(
            len(p.get("values", [0]))
            for p in load_sweep(REPO / "sweeps" / "e1_alpha_wd_grid_cpu.yaml").parameters.values()
        )
        >= 12
    )
