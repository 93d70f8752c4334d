"""grokkit.callbacks.margin: margins, the normalized margin's scale invariance, and its refusal
of a net without a homogeneity degree."""

import pytest
import torch
from conftest import REPO

from grokkit.callbacks.margin import margins
from grokkit.cli import main
from grokkit.models import DiagonalNet


def test_margins_binary_and_multiclass():
    assert margins(torch.tensor([2.0, -1.0]), torch.tensor([1.0, -1.0])).tolist() == [2.0, 1.0]
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, 5.0]])
    assert margins(logits, torch.tensor([0, 1])).tolist() == [0.5, -1.0]


def test_normalized_margin_is_invariant_under_scaling():
    torch.manual_seed(0)
    net = DiagonalNet(d=50)
    x, y = torch.randn(30, 50), torch.randn(30).sign()
    for c in (0.1, 3.0, 40.0):
        values = []
        for scale in (1.0, c):
            with torch.no_grad():
                params = [p * scale for p in net.parameters()]
                w = params[0] ** 2 - params[1] ** 2
                norm = torch.linalg.vector_norm(torch.cat([p.flatten() for p in params]))
            values.append(margins(x @ w, y).min().item() / norm.item() ** net.degree)
        assert values[1] == pytest.approx(values[0], rel=1e-6)


def test_margin_refuses_a_net_without_homogeneity_degree(capsys):
    config = str(REPO / "configs" / "related" / "omnigrok_digits.yaml")
    argv = ["fit", "--config", config, "--trainer.max_steps=2",
            "--trainer.callbacks+=grokkit.callbacks.NormalizedMargin"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "NormalizedMargin needs a homogeneous net, but MLP declares no homogeneity degree" in err
