"""grokkit.ensemble and ``grokkit sweep --vectorize``: members of one process whose gd steps are
one stacked computation are each the run they would be alone (metrics.csv, summary.json,
checkpoint), a diverging member ends alone, an interrupted batch resumes member by member,
incompatible sweep points go to separate batches, and a vectorized sweep reports as the same
sweep run point by point."""

import csv
import json
import math
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import QUICKSTART, grokkit, sweep_file

from grokkit import session
from grokkit.cli import main
from grokkit.data import SparseLinearData
from grokkit.data.full_batch import shared_builds
from grokkit.ensemble import run_members
from grokkit.outcome import EXIT_CODES
from grokkit.report.sweep import collect, fit_law
from grokkit.rundir import read_summary
from grokkit.sweep.spec import expand, load_sweep
from grokkit.sweep.vectorize import plan_batches


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """curves.png is not under test here, and drawing it is most of a small run's time."""
    monkeypatch.setattr(session, "plot_run", lambda run_dir: None)


# A small E1 with a warm-up (per-step η) and no callbacks beyond the phase detector: ~1 s a run
SMALL = [
    "--config",
    str(QUICKSTART),
    "--data.d=400",
    "--data.n_train=64",
    "--data.n_test=200",
    "--model.lr=0.3",
    "--model.lr_warmup_steps=40",
    "--model.lr_warmup_start=0.01",
    "--model.eval_points=30",
    "--trainer.max_steps=300",
    "--trainer.callbacks=[]",
]
MEMBERS = [  # α, λ, η, seed: each member its own
    ["--model.alpha=16", "--model.weight_decay=0.05", "--seed_everything=1"],
    ["--model.alpha=256", "--model.weight_decay=0.1", "--model.lr=0.4", "--seed_everything=2"],
    ["--model.alpha=64", "--model.weight_decay=0.1", "--model.lr_warmup_steps=10"],
]
# float32 steps of a diagonal net: the stacked product X·W sums in another order than the single
# run's X·w, so the members agree with their single runs to rounding, not bit for bit (measured
# over 300 steps: every metrics.csv value within 1.2e-6 relative, the parameters 1.1e-7)
RTOL = 1e-4


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def max_rel_diff(a: Path, b: Path) -> float:
    """The largest relative difference between two runs' metrics.csv (same rows, same columns)."""
    ra, rb = rows(a), rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    worst = 0.0
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            u, v = float(x[key]), float(y[key])
            if u != v:
                worst = max(worst, abs(u - v) / max(abs(u), abs(v), 1e-30))
    return worst


def params(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return state["state_dict"]


def fit(args: list[str], run_dir: str) -> int:
    return main(["fit", *SMALL, *args, f"--run_dir={run_dir}"])


def member_args(args: list[str], run_dir: str) -> list[str]:
    return [*SMALL, *args, f"--run_dir={run_dir}"]


def test_members_equal_their_single_runs(tmp_path):
    codes = run_members([member_args(a, f"ens/m{i}") for i, a in enumerate(MEMBERS)])
    assert codes == [0, 0, 0]
    for i, args in enumerate(MEMBERS):
        assert fit(args, f"alone/m{i}") == 0
        ens, alone = tmp_path / "ens" / f"m{i}", tmp_path / "alone" / f"m{i}"
        assert max_rel_diff(ens, alone) < RTOL
        assert read_summary(ens)["steps"] == read_summary(alone)["steps"] == 300
        # flow time is summed step by step in the run's order: the same float
        assert read_summary(ens)["time"] == read_summary(alone)["time"]
        for name, value in params(alone).items():
            torch.testing.assert_close(params(ens)[name], value, rtol=RTOL, atol=1e-6)
        assert (ens / "config.yaml").read_text().replace("ens/", "alone/") == (
            alone / "config.yaml"
        ).read_text()
    # what a report fits on the two: the same rows, the same λ·t_grok law
    rows = {}
    for where in ("ens", "alone"):
        runs = sorted((tmp_path / where).iterdir())
        rows[where], _ = collect(tmp_path / where, runs)
    keys = ("alpha", "weight_decay", "status", "steps", "grokking_step", "memorization_step")
    assert [[r[k] for k in keys] for r in rows["ens"]] == [
        [r[k] for k in keys] for r in rows["alone"]
    ]
    law_ens, law_alone = fit_law(rows["ens"]), fit_law(rows["alone"])
    assert law_ens is not None and law_ens.n == 3
    assert law_ens.slope == pytest.approx(law_alone.slope, rel=1e-4)


def test_adaptive_members_keep_their_own_steps_and_equal_their_single_runs(tmp_path):
    adaptive = ["--model.integrator=adaptive", "--model.max_flow_time=30"]
    members = [[*m, *adaptive] for m in MEMBERS]
    batchers = []
    codes = run_members(
        [member_args(a, f"ens/m{i}") for i, a in enumerate(members)], on_batcher=batchers.append
    )
    assert codes == [0, 0, 0]
    evaluations = []
    for i, args in enumerate(members):
        assert fit(args, f"alone/m{i}") == 0
        ens, alone = tmp_path / "ens" / f"m{i}", tmp_path / "alone" / f"m{i}"
        # the same rows at the same t; values to rounding: α = 256 starts θ at float32's
        # rounding of 256 (~2e-5 absolute), the flow shrinks ‖θ‖ 20x by t = 30 (measured: the
        # parameters 3.4e-6 apart relative to their end scale, the losses 1.6e-4), and a test
        # point at the margin can flip (one of the 200: 0.005)
        for x, y in zip(rows(ens), rows(alone), strict=True):
            for key in x:
                tol = 0.0051 if key.endswith("/acc") else 1e-3 * abs(float(y[key]))
                assert abs(float(x[key]) - float(y[key])) <= tol, (i, key, x["step"])
        for name, value in params(alone).items():
            assert (params(ens)[name] - value).abs().max() <= 1e-5 * value.abs().max()
        for key in ("gradient_evaluations", "steps", "time"):
            assert read_summary(ens)[key] == read_summary(alone)[key]
        evaluations.append(read_summary(ens)["gradient_evaluations"])
    assert len(set(evaluations)) == 3  # each its own step sizes, stages and rejections
    # every evaluation went through the batch: at least as many rounds as the busiest member's
    assert batchers[0].batches >= max(evaluations)


def test_a_diverging_member_ends_alone_and_the_others_go_on(tmp_path):
    diverging = ["--model.alpha=16", "--model.lr=1e6", "--model.lr_warmup_steps=0"]
    members = [MEMBERS[0], diverging, MEMBERS[1]]
    codes = run_members([member_args(a, f"ens/m{i}") for i, a in enumerate(members)])
    assert codes == [0, EXIT_CODES["diverged"], 0]
    summary = read_summary(tmp_path / "ens" / "m1")
    assert summary["status"] == "diverged" and summary["steps"] < 300
    for i in (0, 2):
        assert fit(members[i], f"alone/m{i}") == 0
        assert max_rel_diff(tmp_path / "ens" / f"m{i}", tmp_path / "alone" / f"m{i}") < RTOL


def test_an_interrupted_batch_resumes_every_member(tmp_path):
    def stop_after_a_few_chunks(batcher):
        def watch():
            while batcher.batches < 8:
                time.sleep(0.01)
            batcher.request_stop()

        threading.Thread(target=watch, daemon=True).start()

    dirs = [f"ens/m{i}" for i in range(len(MEMBERS))]
    codes = run_members(
        [member_args(a, d) for a, d in zip(MEMBERS, dirs, strict=True)],
        on_batcher=stop_after_a_few_chunks,
    )
    assert codes == [EXIT_CODES["interrupted"]] * 3
    steps = [read_summary(tmp_path / d)["steps"] for d in dirs]
    assert all(0 < s < 300 for s in steps)
    resumed = [[*member_args(a, d), "--ckpt_path=last"] for a, d in zip(MEMBERS, dirs, strict=True)]
    assert run_members(resumed) == [0, 0, 0]
    for i, args in enumerate(MEMBERS):
        assert fit(args, f"alone/m{i}") == 0
        assert max_rel_diff(tmp_path / dirs[i], tmp_path / "alone" / f"m{i}") < RTOL


def test_equal_data_settings_share_one_build_only_inside_an_ensemble():
    def build(seed):
        data = SparseLinearData(d=50, n_train=8, n_test=8, seed=seed)
        data.setup()
        return data

    with shared_builds():
        a, b, c = build(0), build(0), build(1)
    assert a.splits is b.splits and a.w_star is b.w_star  # one build, its attributes too
    assert c.splits is not a.splits and not torch.equal(c.splits["train"][0], a.splits["train"][0])
    alone = build(0)
    assert alone.splits is not a.splits
    assert torch.equal(alone.splits["test"][0], a.splits["test"][0])


def test_members_step_together_unless_their_data_differ(tmp_path):
    def chunks_run(members: list[list[str]], where: str) -> int:
        batchers = []
        codes = run_members(
            [member_args(a, f"{where}/m{i}") for i, a in enumerate(members)],
            on_batcher=batchers.append,
        )
        assert codes == [0] * len(members)
        return batchers[0].batches

    together = chunks_run(MEMBERS, "same")
    apart = chunks_run([*MEMBERS[:2], [*MEMBERS[2], "--data.seed=5"]], "other")
    assert apart == 2 * together  # every chunk: one group of two, one member alone


def test_incompatible_points_go_to_separate_batches(tmp_path):
    command = "".join(f"  - {a}\n" for a in ["grokkit", "fit", *SMALL, "${args}"])
    path = tmp_path / "grid.yaml"
    path.write_text(
        "name: grid\nmethod: grid\nparameters:\n"
        "  model.alpha: {values: [16, 64, 256]}\n"
        "  model.weight_decay: {values: [0.05, 0.1]}\n"
        "  data.seed: {values: [0, 1]}\n"
        "  model.integrator: {values: [gd, adaptive]}\n"
        f"command:\n{command}"
    )
    spec = load_sweep(path)
    runs = expand(spec)
    batches = plan_batches(spec, runs, limit=4, workers=1, gpu=False)
    assert sorted((len(b) for b in batches), reverse=True) == [4] * 4 + [2] * 4
    for batch in batches:
        key = {(r.params["data.seed"], r.params["model.integrator"]) for r in batch}
        assert len(key) == 1  # one data seed, one integrator per batch
    assert sorted(r.name for b in batches for r in b) == sorted(r.name for r in runs)
    # two workers: each group of 6 dealt into at least two batches
    two = plan_batches(spec, runs, limit=None, workers=2, gpu=False)
    assert sorted((len(b) for b in two), reverse=True) == [3] * 8
    # what cannot be batched is a batch of one
    path.write_text(
        path.read_text()
        .replace("[gd, adaptive]", "[gd]")
        .replace("parameters:\n", "parameters:\n  model.optimizer: {value: adamw}\n")
    )
    spec = load_sweep(path)
    alone = plan_batches(spec, expand(spec), limit=4, workers=1, gpu=False)
    assert [len(b) for b in alone] == [1] * 12


def small_sweep(directory: Path, alphas: str, decays: str, steps: int) -> Path:
    command = "".join(f"  - {a}\n" for a in ["grokkit", "fit", *SMALL, "${args}"])
    path = directory / "small.yaml"
    path.write_text(
        "name: small\nmethod: grid\nmetric: {name: grokking_time, goal: minimize}\n"
        f"parameters:\n  model.alpha: {{values: {alphas}}}\n"
        f"  model.weight_decay: {{values: {decays}}}\n"
        f"  trainer.max_steps: {{value: {steps}}}\ncommand:\n{command}"
    )
    return path


def test_vectorized_sweep_records_each_member_as_its_own_run(tmp_path):
    path = small_sweep(tmp_path, "[16, 64, 256]", "[0.05]", 300)
    result = grokkit("sweep", str(path), "--vectorize", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 to run in 1 batch(es)" in result.stdout
    out = tmp_path / "runs" / "small"
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["completed"] * 3
    assert len(list((out / "batches").glob("batch-*+2.json"))) == 1
    for record in manifest["runs"]:
        assert record["exit_code"] == 0 and record["attempts"] == 1
        assert record["command"][3] == "fit"  # the member's own command reproduces it alone
        assert "completed after 300 steps" in (out / "logs" / f"{record['name']}.log").read_text()
        summary = read_summary(out / record["name"])
        assert summary["status"] == "completed" and summary["steps"] == 300


@pytest.mark.slow
def test_vectorized_sweep_reports_as_the_point_by_point_sweep(tmp_path):
    path = small_sweep(tmp_path, "[16, 64, 256]", "[0.1]", 500)
    one = grokkit("sweep", str(path), "--out", "one", "--workers", "3", cwd=tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    batched = grokkit("sweep", str(path), "--out", "batched", "--vectorize", cwd=tmp_path)
    assert batched.returncode == 0, batched.stdout + batched.stderr
    assert "3 to run in 1 batch(es)" in batched.stdout
    reports = {}
    for out in ("one", "batched"):
        result = grokkit("report", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        law = json.loads((tmp_path / out / "law.json").read_text())
        table = (tmp_path / out / "report.csv").read_text().splitlines()
        reports[out] = law, table
    (law_one, table_one), (law_batched, table_batched) = reports["one"], reports["batched"]
    assert law_one["n"] == law_batched["n"] == 3
    assert round(law_one["slope"], 2) == round(law_batched["slope"], 2)
    assert math.isclose(law_one["slope"], law_batched["slope"], rel_tol=1e-3)
    assert table_one[0] == table_batched[0]
    header = table_one[0].split(",")
    exact = [i for i, c in enumerate(header) if c in ("run", "model.alpha", "status", "steps")]
    for a, b in zip(table_one[1:], table_batched[1:], strict=True):
        a, b = a.split(","), b.split(",")
        assert [a[i] for i in exact] == [b[i] for i in exact]
        k = header.index("grokking_time")
        assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-3)


def test_vectorize_zero_is_bad_input(tmp_path):
    path = sweep_file(tmp_path, "[16]", "[60]")
    result = grokkit("sweep", str(path), "--vectorize", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--vectorize" in result.stderr


@pytest.mark.parametrize("bad", [[], ["no-such-file.json"]])
def test_ensemble_command_needs_its_members_file(tmp_path, bad):
    assert main(["ensemble", *bad]) == EXIT_CODES["bad_input"]


def test_the_matrix_factorization_gradient_is_autograd_s():
    """E5's hand-written stacked step (in A = U + V, B = U − V) against autograd through the net,
    member by member, and gd in those coordinates against gd on (U, V)."""
    from grokkit.batching import stacking
    from grokkit.data import MatrixCompletionData
    from grokkit.models import MatrixFactorization
    from grokkit.objectives import mse_loss

    data = MatrixCompletionData(d=13, observed_fraction=0.3)
    data.setup()
    x, y = data.splits["train"]
    torch.manual_seed(0)
    nets = [MatrixFactorization(13, init_noise=0.3) for _ in range(3)]
    for net, alpha in zip(nets, (1.0, 2.0, 0.5), strict=True):
        net.scale_init_(alpha)
    stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in nets]) for n in "uv"}
    coordinates = stacking(nets[0], "mse", mse_loss)
    got = coordinates.gradient(stacked, {}, x, y)
    wants = [torch.autograd.grad(mse_loss(net(x), y), [net.u, net.v]) for net in nets]
    for k, want in enumerate(wants):
        torch.testing.assert_close(got["u"][k], want[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["v"][k], want[1], rtol=1e-5, atol=1e-6)
    # one gd step with weight decay λ in (A, B), decoded, is the step on (U, V)
    eta, decay = 0.05, 0.01
    ab = coordinates.encode(stacked)
    step = coordinates.direction(ab, {}, x, y)
    moved = coordinates.decode({n: ab[n] - eta * (step[n] + decay * ab[n]) for n in ab})
    for k, want in enumerate(wants):
        for n, g in zip("uv", want, strict=True):
            expected = stacked[n][k] - eta * (g + decay * stacked[n][k])
            torch.testing.assert_close(moved[n][k], expected, rtol=1e-5, atol=1e-6)
