"""Progress that counts gradient steps: the tqdm and rich bars, and console lines at least
every tenth of a run."""

import re

import lightning.pytorch  # noqa: F401  (imported here, its log handler binds the real stderr)
import pytest
from conftest import TINY

import grokkit.session
from grokkit.cli import main

STEPS = ["--trainer.max_steps=300"]


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """curves.png is not under test here, and drawing it is most of a small run's time."""
    monkeypatch.setattr(grokkit.session, "plot_run", lambda run_dir: None)


def test_the_progress_bar_counts_gradient_steps_with_flow_time_and_accuracy(capsys):
    assert main(["fit", *TINY, *STEPS, "--trainer.enable_progress_bar=true"]) == 0
    out = capsys.readouterr().out.replace("\r", "\n")  # (Lightning's tqdm writes to stdout)
    final = [line for line in out.splitlines() if line.startswith("gradient steps: 100%")]
    assert final and "300/300" in final[-1] and "t=3," in final[-1] and "test/acc=" in final[-1]
    assert "step/s" in final[-1]  # the rate (and so the ETA) is in gradient steps


def test_the_rich_bar_counts_gradient_steps(capsys):
    bar = "--trainer.callbacks+=grokkit.callbacks.RichStepProgressBar"
    assert main(["fit", *TINY, *STEPS, bar, "--trainer.enable_progress_bar=true"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"gradient steps .*300/300", out) and "test/acc" in out


def test_a_callback_whose_package_is_missing_is_one_line(capsys):
    bar = "--trainer.callbacks+=optional_callback.NeedsAMissingPackage"
    assert main(["fit", *TINY, bar]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("grokkit: error:")]
    assert "Traceback" not in err and len(errors) == 1
    assert "No module named 'grokkit_test_no_such_package'" in errors[0]


@pytest.mark.parametrize("integrator", ["gd", "adaptive"])
def test_console_lines_come_at_least_every_tenth_of_the_run(caplog, integrator):
    caplog.set_level("INFO")
    args = [*TINY, "--model.eval_points=100", "--trainer.max_steps=1000"]
    args.append(f"--model.integrator={integrator}")
    assert main(["fit", *args, "--model.rtol=1e-2"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    if integrator == "gd":
        shown = [int(line.split()[1].split("/")[0]) for line in lines]
        end = 1000
    else:  # the adaptive clock: t out of the horizon
        shown = [float(line.split()[3].split("/")[0]) for line in lines]
        end = float(lines[0].split()[3].split("/")[1])
    gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
    # at most a tenth, plus the evaluation chunk that crosses the tenth
    assert shown[-1] == pytest.approx(end) and max(gaps) <= 0.2 * end
