"""examples/: each file runs as it stands, and the README shows it as it stands."""

import re
import runpy

from conftest import REPO

from grokkit import GrokTask

SCRIPT = REPO / "examples" / "own_script.py"
SECTION = "## Use grokkit from your own Lightning script or notebook"


def readme_block(section: str) -> str:
    """The first ```python block after the README heading ``section``."""
    text = (REPO / "README.md").read_text()
    assert section in text, f"README has no section {section!r}"
    found = re.search(r"```python\n(.*?)```", text[text.index(section) :], re.DOTALL)
    assert found, f"no ```python block in README section {section!r}"
    return found.group(1)


def test_readme_shows_the_example_file_exactly():
    assert readme_block(SECTION) == SCRIPT.read_text()


def test_own_script_trains_and_groks(capsys):
    """The example from the README: a few seconds on one CPU thread."""
    ns = runpy.run_path(str(SCRIPT), run_name="__main__")
    phases, rows, task = ns["phases"], ns["rows"], ns["task"]
    assert isinstance(task, GrokTask)
    assert phases.memorization_time < 1  # memorized within the first steps
    plateau = [r["test/acc"] for r in rows if 1 <= r["time"] <= 20]
    assert plateau and max(plateau) < 0.7  # near chance while the net is in the kernel regime
    assert phases.grokking_time > task.predicted_transition_time  # after ln(α)/λ, then grokked
    assert rows[-1] == task.last_row
    assert rows[-1]["train/acc"] == 1 and rows[-1]["test/acc"] >= 0.95
    assert "grokked at t =" in capsys.readouterr().out
