"""The evaluation metrics (grokkit.metrics, torchmetrics): a split evaluated in chunks
(``model.eval_batch_size``) gives the values of one forward pass, and both are the objectives'
own formulas (the values rows had before the metrics); through the CLI, a fit's metrics.csv is
the same with and without chunks; a bad eval_batch_size is bad input."""

import math
from pathlib import Path

import pytest
import torch
from conftest import TINY

import grokkit.session
from grokkit.cli import main
from grokkit.errors import ConfigError
from grokkit.metrics import SplitMetrics
from grokkit.models import MLP, DiagonalNet
from grokkit.objectives import OBJECTIVES
from grokkit.rundir import read_metrics
from grokkit.task import GrokTask

N_TRAIN, N_TEST, CHUNK = 100, 61, 16  # chunks of 16 divide neither split
CLASSES, D = 4, 6


def _problem(loss: str, seed: int = 0, normalized: bool = False) -> tuple[GrokTask, dict]:
    """A task with ``loss`` and train/test splits its net fits (not trained: random outputs)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    classes = loss in ("cross_entropy", "mse_onehot")
    net = MLP(D, CLASSES, width=8, depth=2) if classes else DiagonalNet(D)
    decay = 0.0 if normalized else 0.01
    task = GrokTask(net, loss=loss, weight_decay=decay, lr_normalize_by_loss=normalized)
    batch = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x = torch.randn(n, D, generator=gen)
        if classes:
            y = torch.randint(0, CLASSES, (n,), generator=gen)
        elif loss == "logistic":
            y = torch.randint(0, 2, (n,), generator=gen) * 2.0 - 1
        else:
            y = torch.randn(n, generator=gen)
        batch[split] = (x, y)
    return task, batch


def _direct(task: GrokTask, outputs: dict, batch: dict) -> dict[str, float]:
    """The row's values by the objective's formulas, as GrokTask.evaluate computed them before
    the metrics: loss in float64, float32 accuracy, log L of the train split."""
    objective, row = task.objective, {}
    for split, (_, y) in batch.items():
        y64 = y.double() if y.is_floating_point() else y
        row[f"{split}/loss"] = objective.loss(outputs[split].double(), y64).item()
        if objective.accuracy is not None:
            row[f"{split}/acc"] = objective.accuracy(outputs[split], y).item()
    if task.hparams.lr_normalize_by_loss:
        row["train/log_loss"] = objective.log_loss(outputs["train"], batch["train"][1]).item()
    return row


def _assert_same(row: dict, expected: dict, rel: float) -> None:
    assert set(expected) <= set(row)
    for key, value in expected.items():
        if key.endswith("/acc"):  # float32, summed exactly: the very same value
            assert row[key] == value, key
        else:
            assert row[key] == pytest.approx(value, rel=rel, abs=0), key


@pytest.mark.parametrize("normalized", [False, True], ids=["plain", "loss-normalized"])
@pytest.mark.parametrize("loss", sorted(OBJECTIVES))
def test_chunked_evaluation_equals_one_pass_and_the_objective_formulas(loss, normalized):
    task, batch = _problem(loss, normalized=normalized)
    with torch.no_grad():
        whole = {split: task.net(x) for split, (x, _) in batch.items()}
        chunked = {
            split: torch.cat([task.net(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])
            for split, (x, _) in batch.items()
        }
    one_pass = task.evaluate(batch)
    _assert_same(one_pass, _direct(task, whole, batch), rel=1e-12)

    task.hparams.eval_batch_size = CHUNK
    forwards = []
    task.net.register_forward_hook(lambda module, args, out: forwards.append(len(args[0])))
    in_chunks = task.evaluate(batch)
    assert forwards == [16] * 6 + [4] + [16] * 3 + [13]  # every split, in chunks of 16
    assert list(in_chunks) == list(one_pass)  # the same columns, in the same order
    _assert_same(in_chunks, _direct(task, chunked, batch), rel=1e-12)
    # chunked forward passes may round differently in float32 from the one pass
    _assert_same(in_chunks, _direct(task, whole, batch), rel=1e-5)
    if loss != "mse":
        assert {"train/acc", "test/acc"} <= set(in_chunks)
    assert ("train/log_loss" in in_chunks) == normalized


@pytest.mark.parametrize("loss", sorted(OBJECTIVES))
def test_split_metrics_sum_any_chunking_to_the_whole_split_value(loss):
    """On fixed outputs: every chunking, even of one sample, gives the whole split's values to
    float64 rounding (accuracy exactly)."""
    task, batch = _problem(loss, seed=3)
    x, y = batch["train"]
    with torch.no_grad():
        out = task.net(x)
    metric = SplitMetrics("train", task.objective, log_loss=True)
    metric.update(out, y)
    whole = {k: v.item() for k, v in metric.compute().items()}
    expected = _direct(task, {"train": out}, {"train": (x, y)})
    expected["train/log_loss"] = task.objective.log_loss(out, y).item()
    _assert_same(whole, expected, rel=1e-12)
    for size in (1, 7, 33, N_TRAIN - 1):
        metric.reset()
        for i in range(0, N_TRAIN, size):
            metric.update(out[i : i + size], y[i : i + size])
        _assert_same({k: v.item() for k, v in metric.compute().items()}, expected, rel=1e-12)


def test_log_loss_combines_chunks_where_the_loss_underflows():
    """Confident margins: L ≈ e^-1000 underflows even float64, log L is still combined right."""
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])
    out = y * torch.tensor([1000.0, 1001.0, 1002.0, 1000.5, 1003.0])
    metric = SplitMetrics("train", OBJECTIVES["logistic"], log_loss=True)
    for i in range(0, 5, 2):
        metric.update(out[i : i + 2], y[i : i + 2])
    values = metric.compute()
    margins = [1000.0, 1001.0, 1002.0, 1000.5, 1003.0]
    expected = -1000.0 + math.log(sum(math.exp(1000.0 - m) for m in margins) / 5)
    assert values["train/log_loss"].item() == pytest.approx(expected, rel=1e-12)
    assert values["train/loss"].item() == 0.0 and values["train/acc"].item() == 1.0


def test_metrics_are_made_once_and_reset_at_each_row():
    task, batch = _problem("cross_entropy")
    _, other = _problem("cross_entropy", seed=1)
    task.evaluate(batch)
    made = dict(task._eval_metrics)
    second = task.evaluate(other)
    assert len(made) == 2 and task._eval_metrics.keys() == made.keys()
    assert all(task._eval_metrics[k] is m for k, m in made.items())  # the same objects, reused
    fresh, _ = _problem("cross_entropy")
    assert second == fresh.evaluate(other)  # nothing of the first row left in the sums


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_eval_batch_size_raises_config_error(bad):
    with pytest.raises(ConfigError, match="model.eval_batch_size"):
        GrokTask(DiagonalNet(3), eval_batch_size=bad)


def test_a_fit_in_chunks_writes_the_same_metrics(monkeypatch):
    """A real small fit: metrics.csv's loss and accuracy columns with chunks of 37 (dividing
    neither the 256 training nor the 200 test samples) are the one-pass run's."""
    monkeypatch.setattr(grokkit.session, "plot_run", lambda run_dir: None)
    fit = ["fit", *TINY, "--trainer.callbacks=[]"]
    assert main([*fit, "--run_dir=runs/whole"]) == 0
    assert main([*fit, "--model.eval_batch_size=37", "--run_dir=runs/chunks"]) == 0
    whole, chunks = read_metrics("runs/whole/metrics.csv"), read_metrics("runs/chunks/metrics.csv")
    assert list(chunks) == list(whole) and len(whole["step"]) > 10
    assert chunks["step"] == whole["step"]
    for key in ("train/loss", "test/loss", "train/acc", "test/acc"):
        assert chunks[key] == pytest.approx(whole[key], rel=1e-5), key
    assert len(set(whole["test/loss"])) > 10  # the values change over the run: compared rows
    assert "eval_batch_size: 37" in Path("runs/chunks/config.yaml").read_text()
