"""Every bad input, in one catalog: configs, overrides, checkpoints, run directories, sweep files
and report inputs. Each gets one `grokkit: error:` line naming the bad key or file, exit 2, no
traceback, and leaves every file that was there byte-identical (and writes none: no run directory
that could look like a run). Then `grokkit report` on a sweep with bad run directories (skipped,
one warning each, the rest reported) and SIGTERM during start-up (exit 130, not 143)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import ENV, REPO, TINY

from grokkit.callbacks import NTKAlignment
from grokkit.cli import main
from grokkit.data import SparseLinearData
from grokkit.models import DiagonalNet
from grokkit.preflight import check_against_data
from grokkit.rundir import BASE_COLUMNS
from grokkit.task import GrokTask

E3 = str(REPO / "configs" / "cpu" / "e3_modular_grokking.yaml")
# A fit that trains in a few steps without solving the reference classifiers.
FAST = [*TINY, "--trainer.callbacks=[]"]


@dataclass(frozen=True)
class From:
    """A file or folder of the trained runs (see ``trained``), copied; ``cut``: its first half."""

    path: str
    cut: bool = False


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    named: str  # what the error line must contain: the bad key, value or file
    files: dict[str, str | bytes | From] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    skip: str | None = None


def read_only(folder: str) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        (root / folder).mkdir()
        (root / folder).chmod(0o555)

    return prepare


def sweep(parameters: str = "  model.alpha: {values: [16]}\n", head: str = "method: grid\n") -> str:
    """A small sweep file over the quickstart (block-style command, as `wandb sweep` wants)."""
    command = "".join(f"  - {arg}\n" for arg in ["grokkit", "fit", *FAST, "${args}"])
    return f"{head}parameters:\n{parameters}command:\n{command}"


METRICS_HEADER = ",".join(BASE_COLUMNS) + "\n"
METRICS = METRICS_HEADER + "0,0.0,0.69,0.69,0.5,0.5,128\n2,0.02,0.2,0.6,1.0,0.7,127.9\n"
SUMMARY = json.dumps({"status": "completed", "steps": 2, "train/acc": 1.0, "test/acc": 0.7})
NTK = """trainer:
  callbacks:
    - class_path: grokkit.callbacks.NTKAlignment
      init_args:
        probe_size: {probe_size}
"""
CONFIG = "model:\n  alpha: 128\n  weight_decay: 0.01\nseed_everything: 0\n"


def run(metrics: str | bytes = METRICS, summary: str = SUMMARY, name: str = "run") -> dict:
    """The files of a finished run directory ``name``."""
    return {
        f"{name}/config.yaml": CONFIG,
        f"{name}/metrics.csv": metrics,
        f"{name}/summary.json": summary,
    }


AS_ROOT = "root ignores file permissions" if os.geteuid() == 0 else None
HAS_GPU = "this machine has a GPU" if torch.cuda.is_available() else None
OTHER = From("other/checkpoints/last.ckpt")  # a net of other shapes
TRUNCATED = From("run/checkpoints/last.ckpt", cut=True)
CHECKPOINTS = {
    "missing": ("missing.ckpt", {}),
    "garbage": ("garbage.ckpt", {"garbage.ckpt": b"not a checkpoint at all"}),
    "truncated": ("cut.ckpt", {"cut.ckpt": TRUNCATED}),
    "empty": ("empty.ckpt", {"empty.ckpt": b""}),
    "other-shape": ("other.ckpt", {"other.ckpt": OTHER}),
    "a-folder": ("folder.ckpt", {"folder.ckpt/x": ""}),
}
CHECKPOINT_CASES = {  # test shares validate's code: its cases are a sample
    "fit": ("missing", "garbage", "truncated", "other-shape"),
    "validate": ("missing", "truncated", "empty", "other-shape", "a-folder"),
    "test": ("missing", "garbage", "other-shape"),
}

CATALOG = [
    # ------------------------------------------------------------ config files
    Case(
        "config-binary",
        ["fit", "--config", "bin.yaml"],
        "bin.yaml",
        {"bin.yaml": bytes(range(256)) * 4},
    ),
    Case("config-empty", ["fit", "--config", "empty.yaml"], "empty.yaml", {"empty.yaml": ""}),
    Case("config-list", ["fit", "--config", "list.yaml"], "list.yaml", {"list.yaml": "- 1\n- 2\n"}),
    Case(
        "config-malformed",
        ["fit", "--config", "bad.yaml"],
        "bad.yaml",
        {"bad.yaml": "model: [1, 2\n"},
    ),
    Case(
        "config-unknown-key",
        ["fit", *TINY, "--config", "unknown.yaml"],
        "alfa",
        {"unknown.yaml": "model:\n  alfa: 3\n"},
    ),
    Case(
        "config-wrong-type",
        ["fit", *TINY, "--config", "typed.yaml"],
        "model.alpha",
        {"typed.yaml": "model:\n  alpha: [1, 2]\n"},
    ),
    # ------------------------------------------------------------ overrides
    Case("alpha-not-a-number", ["fit", *TINY, "--model.alpha=abc"], "model.alpha"),
    Case("alpha-zero", ["fit", *TINY, "--model.alpha=0"], "model.alpha"),
    Case(
        "weight-decay-negative", ["fit", *TINY, "--model.weight_decay=-0.1"], "model.weight_decay"
    ),
    Case(
        "train-fraction-above-1",
        ["fit", "--config", E3, "--data.train_fraction=1.5"],
        "data.train_fraction",
    ),
    Case("p-below-2", ["fit", "--config", E3, "--data.p=1", "--model.net.init_args.p=1"], ".p"),
    Case("batch-size-above-data", ["fit", *TINY, "--model.batch_size=257"], "model.batch_size"),
    Case(
        "eval-batch-size-zero", ["fit", *TINY, "--model.eval_batch_size=0"], "model.eval_batch_size"
    ),
    Case(
        "ntk-probe-size-zero",
        ["fit", *TINY, "--config", "ntk.yaml"],
        "probe_size",
        {"ntk.yaml": NTK.format(probe_size=0)},
    ),
    Case("net-data-mismatch", ["fit", *TINY, "--model.net.init_args.d=7"], "model.net.d=7"),
    Case(
        "accelerator-gpu",
        ["fit", *TINY, "--trainer.accelerator=gpu"],
        "trainer.accelerator",
        skip=HAS_GPU,
    ),
    Case(
        "accelerator-unknown", ["fit", *TINY, "--trainer.accelerator=abacus"], "trainer.accelerator"
    ),
    Case("max-steps-negative", ["fit", *TINY, "--trainer.max_steps=-5"], "trainer.max_steps"),
    Case("max-steps-zero", ["fit", *TINY, "--trainer.max_steps=0"], "trainer.max_steps"),
    Case("seed-not-a-number", ["fit", *TINY, "--seed_everything=abc"], "seed_everything"),
    Case("seed-negative", ["fit", *TINY, "--seed_everything=-3"], "seed_everything"),
    Case(
        "threshold-above-1",
        ["fit", *TINY, "--phases.grokking_threshold=1.5"],
        "phases.grokking_threshold",
    ),
    Case(
        "callback-twice",
        ["fit", *TINY, "--trainer.callbacks+=grokkit.callbacks.NTKAlignment"],
        "NTKAlignment",
    ),
    Case("unknown-command", ["fly"], "fly"),
    # ------------------------------------------------------------ run directories
    Case("run-dir-is-a-file", ["fit", *FAST, "--run_dir=afile"], "afile", {"afile": "x"}),
    Case(
        "run-dir-under-a-file", ["fit", *FAST, "--run_dir=afile/run"], "afile/run", {"afile": "x"}
    ),
    Case(
        "run-dir-read-only",
        ["fit", *FAST, "--run_dir=ro/run"],
        "ro/run",
        prepare=read_only("ro"),
        skip=AS_ROOT,
    ),
    # ------------------------------------------------------------ checkpoints
    *[
        Case(f"{command}-ckpt-{kind}", [command, *FAST, f"--ckpt_path={name}"], name, files)
        for command, kinds in CHECKPOINT_CASES.items()
        for kind, (name, files) in CHECKPOINTS.items()
        if kind in kinds
    ],
    Case(
        "fit-resume-other-data",
        ["fit", *FAST, "--data.seed=7", "--ckpt_path=runs/done/checkpoints/last.ckpt"],
        "runs/done",
        {"runs/done": From("run")},
    ),
    # ------------------------------------------------------------ sweep files
    Case("sweep-missing", ["sweep", "nope.yaml"], "nope.yaml"),
    Case("sweep-binary", ["sweep", "bin.yaml"], "bin.yaml", {"bin.yaml": bytes(range(256)) * 4}),
    Case(
        "sweep-malformed",
        ["sweep", "s.yaml"],
        "s.yaml",
        {"s.yaml": "method: grid\nparameters: [1, 2\n"},
    ),
    Case("sweep-not-a-mapping", ["sweep", "s.yaml"], "s.yaml", {"s.yaml": "- grid\n"}),
    Case(
        "sweep-unknown-method",
        ["sweep", "s.yaml"],
        "method",
        {"s.yaml": sweep(head="method: grdi\n")},
    ),
    Case(
        "sweep-no-parameters",
        ["sweep", "s.yaml"],
        "parameters",
        {"s.yaml": "method: grid\ncommand: [grokkit]\n"},
    ),
    Case(
        "sweep-no-command", ["sweep", "s.yaml"], "command", {"s.yaml": sweep().split("command:")[0]}
    ),
    Case(
        "sweep-bad-value",
        ["sweep", "s.yaml"],
        "model.alpha",
        {"s.yaml": sweep("  model.alpha: {values: [16, -1]}\n")},
    ),
    Case(
        "sweep-bad-type",
        ["sweep", "s.yaml"],
        "trainer.max_steps",
        {"s.yaml": sweep("  trainer.max_steps: {value: 1.5}\n")},
    ),
    Case(
        "sweep-accelerator-unavailable",
        ["sweep", "s.yaml"],
        "trainer.accelerator",
        {"s.yaml": sweep("  trainer.accelerator: {value: gpu}\n")},
        skip=HAS_GPU,
    ),
    Case(
        "sweep-workers-zero",
        ["sweep", "s.yaml", "--workers", "0"],
        "--workers",
        {"s.yaml": sweep()},
    ),
    Case(
        "sweep-gpus-garbage",
        ["sweep", "s.yaml", "--gpus", "zero,one"],
        "--gpus",
        {"s.yaml": sweep()},
    ),
    # ------------------------------------------------------------ report inputs
    Case("report-no-path", ["report"], "PATH"),
    Case("report-missing-path", ["report", "nowhere"], "nowhere"),
    Case("report-empty-folder", ["report", "empty"], "empty", {"empty/.keep": ""}),
    Case("report-metrics-header-only", ["report", "run"], "run/metrics.csv", run(METRICS_HEADER)),
    Case("report-metrics-empty", ["report", "run"], "run/metrics.csv", run("")),
    Case("report-metrics-half-written", ["report", "run"], "run/metrics.csv", run(METRICS[:-12])),
    Case(
        "report-metrics-not-numbers",
        ["report", "run"],
        "run/metrics.csv",
        run(METRICS_HEADER + "a,b,c,d,e,f,g\n"),
    ),
    Case("report-metrics-binary", ["report", "run"], "run/metrics.csv", run(bytes(range(256)))),
    Case(
        "report-summary-corrupted",
        ["report", "run"],
        "run/summary.json",
        run(summary='{"status": "comp'),
    ),
    Case(
        "report-summary-not-a-mapping", ["report", "run"], "run/summary.json", run(summary="[1, 2]")
    ),
    Case(
        "report-sweep-all-runs-bad",
        ["report", "sweep"],
        "sweep",
        {**run("", name="sweep/a"), **run(summary="{", name="sweep/b")},
    ),
    Case(
        "report-sweep-json-corrupted",
        ["report", "sweep"],
        "sweep/sweep.json",
        {"sweep/sweep.json": '{"runs": ['},
    ),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished two-step run ``run`` (the quickstart at d = 500) and ``other``, a copy of its
    checkpoint with the net's tensors at d = 300 (other shapes)."""
    root = tmp_path_factory.mktemp("trained")
    assert main(["fit", *FAST, "--trainer.max_steps=2", f"--run_dir={root / 'run'}"]) == 0
    checkpoint = torch.load(root / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    state = checkpoint["state_dict"]
    state.update({name: state[name][:300].clone() for name in ("net.u", "net.v")})
    (root / "other" / "checkpoints").mkdir(parents=True)
    torch.save(checkpoint, root / OTHER.path)
    return root


def make_files(root: Path, files: dict[str, str | bytes | From], trained: Path) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, From):
            source = trained / content.path
            if source.is_dir():
                shutil.copytree(source, path)
                continue
            data = source.read_bytes()
            content = data[: len(data) // 2] if content.cut else data
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root``: a file's bytes, None for a folder."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")
    }


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse-based commands exit from a bad option
        return int(exit_.code or 0)


@pytest.mark.parametrize("case", CATALOG, ids=[c.id for c in CATALOG])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, trained, tmp_path, capsys):
    if case.skip:
        pytest.skip(case.skip)
    make_files(tmp_path, case.files, trained)
    if case.prepare:
        case.prepare(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = run_cli(list(case.argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("grokkit: error:")]
    assert code == 2, (code, err[-3000:])
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert case.named in errors[0], errors[0]
    assert snapshot(tmp_path) == before


def test_catalog_covers_every_kind_of_input():
    ids = [c.id for c in CATALOG]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    for command in ("fit", "validate", "test", "sweep", "report"):
        assert any(c.argv[0] == command for c in CATALOG), command


# ---------------------------------------------------------------- beyond the catalog


def test_read_only_run_dir_is_one_line_even_as_root(tmp_path, monkeypatch, capsys):
    """A read-only file system refuses root too; chmod does not, so os.access stands in."""
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path).name != "ro" and real_access(path, mode)
    )
    Path("ro").mkdir()
    assert main(["fit", *FAST, "--run_dir=ro/run"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert line.startswith("grokkit: error: run_dir: cannot create") and "not writable" in line
    assert list(tmp_path.rglob("*")) == [tmp_path / "ro"]


def test_an_ntk_probe_larger_than_the_data_is_noted(capsys):
    """Not bad input (the E2 config's default probe of 128 is above its 32 points): one line."""
    data = SparseLinearData(d=50, n_train=20, n_test=10)
    task = GrokTask(DiagonalNet(50))
    check_against_data(task, data, [NTKAlignment(probe_size=64), NTKAlignment(probe_size=20)])
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "grokkit: NTKAlignment.probe_size=64 is more than the 20 training examples; the kernel "
        "is computed on all 20"
    )


def test_report_skips_bad_run_directories_and_reports_the_rest(tmp_path, capsys):
    files = {
        **run(name="sweep/000-good"),
        **run(name="sweep/001-good"),
        **run(METRICS[:-12], name="sweep/002-half-written"),
        **run(summary="{", name="sweep/003-bad-summary"),
        "sweep/sweep.json": '{"runs": [',  # damaged too: the run directories are reported
    }
    make_files(tmp_path, files, tmp_path)
    bad = {name: (tmp_path / name).read_bytes() for name in files if "good" not in name}
    assert main(["report", "sweep"]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 3 and all(w.startswith("grokkit: warning:") for w in warnings)
    assert "sweep/002-half-written/metrics.csv" in warnings[0]
    assert "sweep/003-bad-summary/summary.json" in warnings[1]
    assert "sweep/sweep.json" in warnings[2]
    table = (tmp_path / "sweep" / "report.csv").read_text()
    assert "000-good" in table and "001-good" in table
    assert "half-written" not in table and "bad-summary" not in table
    assert "2 runs: 2 completed" in out
    assert {name: (tmp_path / name).read_bytes() for name in bad} == bad  # skipped: untouched
    assert not (tmp_path / "sweep" / "002-half-written" / "curves.png").exists()


def test_sigterm_during_start_up_is_interrupted_not_killed(tmp_path):
    """Exit 130 (a sweep resumes the run), one line, no traceback, no run directory: SIGTERM
    is sent as soon as the command has its handler, while it is still importing its modules."""
    status = Path("/proc/self/status")
    if not status.is_file():
        pytest.skip("needs /proc to see when the handler is installed")
    argv = [sys.executable, "-m", "grokkit", "fit", *FAST, "--run_dir=runs/x"]
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"Traceback" not in out + err
    assert err.decode().strip().splitlines()[-1] == "grokkit: interrupted (SIGTERM)"
    assert not (tmp_path / "runs").exists()


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False
