"""W&B sweep files: load, validate and expand them into runs, rendered the way ``wandb agent`` does.

A sweep file here is exactly what ``wandb sweep FILE`` accepts. ``grokkit sweep`` runs the grid
and random methods itself (no server); bayes needs W&B's server.
"""

import difflib
import itertools
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grokkit.errors import ConfigError, require

# Top-level keys W&B accepts in a sweep file.
SWEEP_KEYS = {
    "program",
    "method",
    "parameters",
    "metric",
    "command",
    "name",
    "description",
    "project",
    "entity",
    "early_terminate",
    "run_cap",
    "controller",
    "job",
    "image_uri",
}
PARAMETER_KEYS = {
    "value",
    "values",
    "distribution",
    "min",
    "max",
    "mu",
    "sigma",
    "q",
    "probabilities",
}
METHODS = ("grid", "random", "bayes")
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "log_uniform",
    "log_uniform_values",
    "q_uniform",
    "q_log_uniform_values",
    "normal",
)
AGENT_MACROS = {"${env}", "${interpreter}", "${program}", "${args}"}


@dataclass
class SweepRun:
    """One run of a sweep: its directory name and parameter values (file order)."""

    name: str
    params: dict[str, Any]

    def args(self) -> list[str]:
        """The run's flags exactly as ``wandb agent`` renders ``${args}``: ``--key=value``."""
        return [f"--{key}={value}" for key, value in self.params.items()]


@dataclass
class SweepSpec:
    """A validated sweep file."""

    path: Path
    name: str
    method: str
    parameters: dict[str, dict[str, Any]]
    command: list[str]
    program: str | None = None
    run_cap: int | None = None
    metric: dict[str, Any] = field(default_factory=dict)

    def command_for(self, run: SweepRun, python: str) -> list[str]:
        """The run's command line: the file's ``command`` with the agent's macros filled in."""
        argv: list[str] = []
        for chunk in self.command:
            if chunk == "${args}":
                argv += run.args()
            elif chunk == "${interpreter}":
                argv.append(python)
            elif chunk == "${program}":
                argv.append(str(self.program))
            elif chunk != "${env}":
                argv.append(chunk)
        return argv

    def fit_args(self, run: SweepRun) -> list[str]:
        """What the run's command passes to ``grokkit fit`` (everything after ``fit``)."""
        argv = self.command_for(run, "python")
        return argv[argv.index("fit") + 1 :]


def _fail(path: Path, message: str) -> None:
    raise ConfigError(f"sweep file {path}: {message}")


def _did_you_mean(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of {sorted(known)})"


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; any problem is one ConfigError line naming the key."""
    path = Path(path)
    require(path.is_file(), f"sweep file {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"sweep file {path}: not a text (UTF-8) file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or error
        raise ConfigError(f"sweep file {path}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        _fail(path, "expected a mapping with method, parameters and command")
    for key in raw:
        if key not in SWEEP_KEYS:
            _fail(path, f"unknown key {key!r}{_did_you_mean(str(key), SWEEP_KEYS)}")
    if "parameters" not in raw:
        _fail(path, "missing 'parameters' (the values to sweep over)")
    method = raw.get("method")
    if method not in METHODS:
        _fail(path, f"method: expected one of {list(METHODS)}, got {method!r}")
    parameters = raw["parameters"]
    if not isinstance(parameters, dict) or not parameters:
        _fail(path, "parameters: expected a mapping of flat dotted names (model.alpha: ...)")
    for name, spec in parameters.items():
        _check_parameter(path, str(name), spec, method)
    command = raw.get("command")
    if not (isinstance(command, list) and all(isinstance(c, str) for c in command)):
        _fail(
            path,
            "command: expected a block list of strings, e.g. [grokkit, fit, --config, "
            "FILE.yaml, ${args}] written one item per line",
        )
    if "${args}" not in command:
        _fail(path, "command: must contain ${args} (where the agent puts --key=value flags)")
    if "fit" not in command or not any(Path(c).name == "grokkit" for c in command):
        _fail(
            path,
            f"command: expected a `grokkit fit --config FILE ${{args}}` command, got "
            f"{' '.join(command)}",
        )
    for chunk in command:
        if chunk.startswith("${") and chunk not in AGENT_MACROS:
            _fail(path, f"command: unknown macro {chunk} (expected one of {sorted(AGENT_MACROS)})")
    if "${program}" in command and not isinstance(raw.get("program"), str):
        _fail(path, "command uses ${program} but 'program' is not set")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        _fail(path, f"run_cap: expected a positive integer, got {run_cap!r}")
    metric = raw.get("metric") or {}
    if not isinstance(metric, dict) or (metric and not isinstance(metric.get("name"), str)):
        _fail(
            path,
            "metric: expected a mapping with a name, e.g. {name: grokking_time, goal: minimize}",
        )
    if metric.get("goal", "minimize") not in ("minimize", "maximize"):
        _fail(path, f"metric.goal: expected minimize or maximize, got {metric['goal']!r}")
    name = raw.get("name") or path.stem
    require(
        isinstance(name, str) and re.fullmatch(r"[\w.-]+", name) is not None,
        f"sweep file {path}: name: expected letters, digits, '.', '-' or '_', got {name!r}",
    )
    return SweepSpec(
        path=path,
        name=name,
        method=method,
        parameters=parameters,
        command=command,
        program=raw.get("program"),
        run_cap=run_cap,
        metric=metric,
    )


def _check_parameter(path: Path, name: str, spec: Any, method: str) -> None:
    where = f"parameters.{name}"
    if not isinstance(spec, dict):
        _fail(path, f"{where}: expected a mapping such as {{values: [1, 10]}}, got {spec!r}")
    if "parameters" in spec:
        _fail(
            path,
            f"{where}: nested parameters are not supported; use flat dotted names "
            f"such as model.alpha",
        )
    for key in spec:
        if key not in PARAMETER_KEYS:
            _fail(path, f"{where}: unknown key {key!r}{_did_you_mean(str(key), PARAMETER_KEYS)}")
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", name):
        _fail(path, f"{where}: expected a flat dotted name such as model.alpha")
    if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
        _fail(path, f"{where}.values: expected a non-empty list, got {spec['values']!r}")
    distribution = _distribution(spec)
    if distribution is None:
        _fail(path, f"{where}: give value, values, or a distribution with min and max")
    if distribution not in DISTRIBUTIONS:
        _fail(
            path,
            f"{where}.distribution: {distribution!r} is not supported here (expected "
            f"one of {list(DISTRIBUTIONS)})",
        )
    if method == "grid" and distribution not in ("constant", "categorical"):
        _fail(
            path,
            f"{where}: the grid method needs value or values, not a {distribution} distribution",
        )
    needs = {"normal": ("mu", "sigma")}.get(distribution, ("min", "max"))
    if distribution not in ("constant", "categorical"):
        for key in needs:
            value = spec.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                _fail(path, f"{where}.{key}: expected a number, got {value!r}")
        if needs == ("min", "max") and spec["min"] >= spec["max"]:
            _fail(path, f"{where}: min must be below max, got {spec['min']} and {spec['max']}")
        if distribution == "int_uniform" and not all(isinstance(spec[k], int) for k in needs):
            _fail(path, f"{where}: int_uniform needs integer min and max")
        if distribution.startswith(("log_uniform_values", "q_log")) and spec["min"] <= 0:
            _fail(path, f"{where}.min: {distribution} needs min > 0, got {spec['min']}")


def _distribution(spec: dict[str, Any]) -> str | None:
    """The distribution W&B infers when none is named."""
    if "distribution" in spec:
        return spec["distribution"]
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec and "max" in spec:
        both_int = all(isinstance(spec[k], int) for k in ("min", "max"))
        return "int_uniform" if both_int else "uniform"
    return None


def expand(spec: SweepSpec, count: int | None = None, seed: int = 0) -> list[SweepRun]:
    """The sweep's runs: every grid point in file order, or ``count`` random draws (seeded, so a
    rerun of the same file draws the same runs and can resume them)."""
    names = list(spec.parameters)
    if spec.method == "grid":
        choices = [_grid_values(spec.parameters[n]) for n in names]
        combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*choices)]
        if count is not None:
            combos = combos[:count]
    elif spec.method == "random":
        count = count or spec.run_cap
        require(
            count is not None and count > 0,
            f"sweep file {spec.path}: the random method needs --count N (or run_cap in the file)",
        )
        rng = random.Random(seed)
        combos = [{n: _draw(spec.parameters[n], rng) for n in names} for _ in range(count)]
    else:
        raise ConfigError(
            f"sweep file {spec.path}: method {spec.method!r} needs a W&B server (wandb sweep + "
            f"grokkit agent); grokkit sweep runs grid and random"
        )
    varying = [n for n in names if _distribution(spec.parameters[n]) != "constant"]
    return [SweepRun(_run_name(i, combo, varying), combo) for i, combo in enumerate(combos)]


def _grid_values(spec: dict[str, Any]) -> list[Any]:
    return [spec["value"]] if "value" in spec else list(spec["values"])


def _draw(spec: dict[str, Any], rng: random.Random) -> Any:
    kind = _distribution(spec)
    if kind == "constant":
        return spec["value"]
    if kind == "categorical":
        weights = spec.get("probabilities")
        return rng.choices(spec["values"], weights=weights)[0]
    if kind == "normal":
        return rng.gauss(spec["mu"], spec["sigma"])
    low, high = spec["min"], spec["max"]
    if kind == "int_uniform":
        return rng.randint(low, high)
    if kind == "log_uniform":  # min and max are natural-log exponents
        return math.exp(rng.uniform(low, high))
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    q = spec.get("q", 1)
    if kind == "q_uniform":
        return round(rng.uniform(low, high) / q) * q
    if kind == "q_log_uniform_values":
        return round(math.exp(rng.uniform(math.log(low), math.log(high))) / q) * q
    return rng.uniform(low, high)


def _run_name(index: int, params: dict[str, Any], varying: list[str]) -> str:
    """``003-alpha=256_weight_decay=0.02``: index first (sorts, unique), then what varies."""
    parts = [f"{n.rsplit('.', 1)[-1]}={_short(params[n])}" for n in varying]
    slug = re.sub(r"[^\w.=+-]", "-", "_".join(parts))[:80]
    return f"{index:03d}-{slug}" if slug else f"{index:03d}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
