"""grokkit.callbacks.probes: implicit-bias probes against the reference predictors they are
compared with (max-margin classifiers, matrix completions, the initial-NTK kernel predictor),
checkpoint/resume, and the dichotomy itself on a small E1 run."""

import json
from pathlib import Path

import pytest
from conftest import REPO, SMALL_E1

from grokkit.cli import main
from grokkit.rundir import read_metrics

# The quickstart config (under SMALL_E1) already has the margin, NTK and probe callbacks.
SMALL_E1_GROKS = [*SMALL_E1, "--model.weight_decay=0.05"]


def load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def test_small_e1_shows_the_dichotomy():
    """Plateau: the net points along the max-L2-margin classifier and has its test accuracy;
    after grokking: along the max-L1-margin one, with the normalized margin near its maximum."""
    assert main(["fit", *SMALL_E1_GROKS, "--trainer.max_steps=1500", "--run_dir=runs/e1"]) == 0
    summary = load("runs/e1/summary.json")
    refs = summary["references"]
    assert set(refs) == {"max_l2_margin", "max_l1_margin"}
    assert refs["max_l1_margin"]["test/acc"] == 1.0 and refs["max_l2_margin"]["test/acc"] < 0.7
    cols = read_metrics("runs/e1/metrics.csv")
    grok = summary["grokking_step"]
    plateau = [i for i, s in enumerate(cols["step"]) if 10 <= s < grok / 2]
    assert plateau
    for i in plateau:
        assert cols["probe/cos_l2"][i] > 0.99 and cols["probe/cos_l1"][i] < 0.3
        assert abs(cols["test/acc"][i] - refs["max_l2_margin"]["test/acc"]) < 0.03
    assert cols["probe/cos_l1"][-1] > 0.99 and cols["probe/cos_l2"][-1] < 0.3
    assert 0.8 * refs["max_l1_margin"]["margin"] < cols["margin/normalized"][-1]
    assert cols["margin/normalized"][-1] <= refs["max_l1_margin"]["margin"] * (1 + 1e-6)
    assert cols["margin/normalized"][0] == 0.0  # f(θ̄) = 0 at the diagonal net's init
    assert set(load("runs/e1/theory/references.json")["references"]) == set(refs)


@pytest.mark.parametrize("depth, late", [(1, None), (3, "lq")])
def test_diagonal_references_follow_the_depth(depth, late):
    """Depth L: the late reference is the max-margin classifier in Σ|w_j|^(2/L) (q = 2/3 at
    L = 3); at L = 1 the net is linear in θ and its late phase is the kernel's (L2 only)."""
    run = f"runs/depth{depth}"
    args = [*SMALL_E1_GROKS, f"--model.net.init_args.depth={depth}", "--trainer.max_steps=5"]
    assert main(["fit", *args, f"--run_dir={run}"]) == 0
    refs = load(f"{run}/summary.json")["references"]
    assert set(refs) == {"max_l2_margin"} | ({f"max_{late}_margin"} if late else set())
    cols = read_metrics(f"{run}/metrics.csv")
    assert "probe/cos_l2" in cols and "probe/cos_l1" not in cols
    if late:
        assert refs["max_lq_margin"]["q"] == pytest.approx(2 / 3)
        assert refs["max_lq_margin"]["margin"] > 0 and "probe/cos_lq" in cols


def test_probe_and_margin_survive_resume(capsys):
    assert main(["fit", *SMALL_E1_GROKS, "--trainer.max_steps=400", "--run_dir=runs/full"]) == 0
    assert main(["fit", *SMALL_E1_GROKS, "--trainer.max_steps=200", "--run_dir=runs/part"]) == 0
    capsys.readouterr()
    resume = ["--ckpt_path=runs/part/checkpoints/last.ckpt", "--trainer.max_steps=400"]
    assert main(["fit", *SMALL_E1_GROKS, *resume]) == 0
    assert "grokkit: reference" not in capsys.readouterr().out  # loaded from theory/, not solved
    full, resumed = read_metrics("runs/full/metrics.csv"), read_metrics("runs/part/metrics.csv")
    # (the evaluation schedule depends on max_steps: compare the steps both runs evaluated
    # after the resume point, the last one included)
    common = sorted(set(full["step"]) & set(resumed["step"]) - set(range(201)))
    assert common and common[-1] == 400
    for column in ("margin/normalized", "probe/cos_l1", "probe/cos_l2"):
        at = {step: v for step, v in zip(full["step"], full[column], strict=True)}
        again = {step: v for step, v in zip(resumed["step"], resumed[column], strict=True)}
        assert [again[s] for s in common] == pytest.approx([at[s] for s in common], rel=1e-5)
    summary = load("runs/part/summary.json")
    assert summary["references"] == load("runs/full/summary.json")["references"]


def test_matrix_completion_probe_distances(capsys):
    config = str(REPO / "configs" / "cpu" / "e5_matrix_completion.yaml")
    argv = ["fit", "--config", config, "--data.d=24", "--data.observed_fraction=0.3",
            "--trainer.max_steps=400", "--model.eval_points=40", "--run_dir=runs/mc"]  # fmt: skip
    assert main(argv) == 0
    summary = load("runs/mc/summary.json")
    refs = summary["references"]
    assert set(refs) == {"zero_fill", "min_nuclear"}
    assert refs["min_nuclear"]["test/loss"] < 0.1 * refs["zero_fill"]["test/loss"]
    cols = read_metrics("runs/mc/metrics.csv")
    assert cols["probe/dist_zero_fill"][0] == pytest.approx(1.0)  # W = 0 at init
    assert cols["ntk/init_alignment"][0] == pytest.approx(1.0)  # the config's NTK callback
    # kernel regime (λt ≤ 0.014 here): once memorized, W is the zero-fill predictor
    after = [i for i, s in enumerate(cols["step"]) if s >= 2 * summary["memorization_step"]]
    for i in after:
        assert cols["probe/dist_zero_fill"][i] < 0.01 and cols["probe/dist_min_nuclear"][i] > 0.5
        assert cols["test/loss"][i] == pytest.approx(refs["zero_fill"]["test/loss"], rel=0.01)


def test_other_nets_are_compared_with_the_initial_ntk_kernel_predictor():
    config = str(REPO / "configs" / "related" / "omnigrok_digits.yaml")
    argv = ["fit", "--config", config, "--data.n_train=300", "--model.net.width=32",
            "--trainer.max_steps=30", "--model.eval_points=10", "--run_dir=runs/dg"]  # fmt: skip
    assert main(argv) == 0
    refs = load("runs/dg/summary.json")["references"]
    # the min-norm interpolant of the one-hot digits on the initial NTK (measured: 0.923)
    assert set(refs) == {"initial_ntk_kernel"} and refs["initial_ntk_kernel"]["test/acc"] > 0.85
    agree = read_metrics("runs/dg/metrics.csv")["probe/agree_kernel"]
    assert len(agree) > 5 and all(0 <= a <= 1 for a in agree)
    # too large a kernel is skipped with a message, not computed
    assert main([*argv[:-1], "--run_dir=runs/dg2", "--trainer.max_steps=2",
                 "--trainer.callbacks.kernel_budget=1000"]) == 0  # fmt: skip
    assert "references" not in load("runs/dg2/summary.json")


def test_references_that_only_depend_on_the_data_are_solved_once_per_process(monkeypatch):
    """The diagonal net's margins and the completions depend on the data alone: runs of one
    process (an ensemble's members) with equal data share one solve; other data solve again."""
    from grokkit.callbacks import probes

    solves = []

    def counted(task, batch, budget):
        solves.append(task.hparams.alpha)
        return compute(task, batch, budget)

    compute = probes.compute_references
    monkeypatch.setattr(probes, "_DATA_ONLY", {})
    monkeypatch.setattr(probes, "compute_references", counted)
    short = [*SMALL_E1_GROKS, "--trainer.max_steps=5"]
    for i, extra in enumerate(
        (["--model.alpha=4"], ["--model.alpha=16"], ["--model.alpha=16", "--data.seed=7"])
    ):
        assert main(["fit", *short, *extra, f"--run_dir=runs/shared{i}"]) == 0
    assert solves == [4, 16]  # the second run reused the first's; the third has other data
    first, second = (load(f"runs/shared{i}/summary.json")["references"] for i in (0, 1))
    assert first == second
