"""The Fourier probe of modular nets: its basis, energies, restricted/excluded logits, and the
callback in a run (the rise across E3's transition is in test_cpu_configs.py, slow)."""

import csv
import math
from pathlib import Path

import pytest
import torch

from grokkit.callbacks.fourier import (
    column_frequency_energy,
    column_top_share,
    fourier_basis,
    frequency_energy,
    gini,
    restricted_and_excluded_logits,
)
from grokkit.cli import main
from grokkit.models import ModularTransformer, TwoLayerReLU


@pytest.mark.parametrize("p", [7, 8, 13])
def test_basis_is_orthonormal_and_orthogonal_to_constants(p):
    basis, freqs = fourier_basis(p)
    assert basis.shape == (p - 1, p) and len(freqs) == p - 1
    torch.testing.assert_close(basis @ basis.T, torch.eye(p - 1, dtype=torch.float64))
    torch.testing.assert_close(basis.sum(1), torch.zeros(p - 1, dtype=torch.float64))
    assert sorted(set(freqs)) == list(range(1, p // 2 + 1))


def _wave_embedding(p: int, ks: list[int], d: int = 6, seed: int = 0) -> torch.Tensor:
    """(p, d) columns that are random combinations of cos/sin at the frequencies ks."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(p, dtype=torch.float64)
    waves = [f(2 * math.pi * k * x / p) for k in ks for f in (torch.cos, torch.sin)]
    return torch.stack(waves, 1) @ torch.randn(len(waves), d, generator=gen, dtype=torch.float64)


def test_energy_sits_on_the_embedded_frequencies():
    p = 23
    energy = frequency_energy([_wave_embedding(p, [3]), _wave_embedding(p, [7], seed=1)])
    assert energy.shape == (p // 2,)
    nonzero = (energy > 1e-9 * energy.max()).nonzero().flatten() + 1
    assert nonzero.tolist() == [3, 7]
    # Parseval: the energy is the embeddings' squared norm less their constant part
    total = sum((e - e.mean(0)).pow(2).sum() for e in (_wave_embedding(p, [3]),))
    assert frequency_energy([_wave_embedding(p, [3])]).sum().item() == pytest.approx(total.item())


def test_unit_share_is_one_when_each_unit_uses_one_frequency_of_many():
    p = 23
    units = torch.cat([_wave_embedding(p, [k], d=1, seed=k) for k in range(1, 12)], dim=1)
    per_unit = column_frequency_energy([units, 2 * units])
    assert per_unit.shape == (p // 2, 11)
    assert column_top_share(per_unit) == pytest.approx(1.0)
    assert frequency_energy([units]).min() > 0  # while the whole embedding uses every frequency
    mixed = _wave_embedding(p, [2, 5], d=4)
    assert 0.5 <= column_top_share(column_frequency_energy([mixed])) < 1


def test_gini_bounds():
    assert gini(torch.ones(10)) == pytest.approx(0.0)
    assert gini(torch.tensor([0.0] * 9 + [1.0])) == pytest.approx(0.9)
    assert 0 < gini(torch.arange(10.0)) < 0.9


def test_restricted_and_excluded_logits_split_the_key_directions_off():
    p, gen = 11, torch.Generator().manual_seed(0)
    r = torch.arange(p, dtype=torch.float64)
    phase = r[:, None, None] + r[None, :, None] - r[None, None, :]
    key = 2.0 * torch.cos(2 * math.pi * 3 * phase / p) - torch.sin(2 * math.pi * 3 * phase / p)
    other = 0.5 * torch.cos(2 * math.pi * 4 * phase / p)  # another frequency: excluded
    noise = 0.1 * torch.randn(p, p, p, generator=gen, dtype=torch.float64)
    restricted, excluded = restricted_and_excluded_logits(key + other + noise, [3], sign=1)
    torch.testing.assert_close(restricted + excluded, key + other + noise)
    assert (restricted - key).norm() < 0.05 * key.norm()  # the key part, up to noise's share
    assert (restricted * excluded).sum().abs() < 1e-8 * key.norm() ** 2  # orthogonal split
    # subtraction: the phase a − b − c; an addition-phase wave has no projection on it
    restricted_sub, _ = restricted_and_excluded_logits(key, [3], sign=-1)
    assert restricted_sub.norm() < 1e-9 * key.norm()


def test_nets_expose_their_operand_embeddings():
    net = TwoLayerReLU(p=5, width=8)
    a, b = net.operand_embeddings()
    assert a.shape == b.shape == (5, 8)
    assert torch.equal(torch.cat([a, b]), net.w1)
    (e,) = ModularTransformer(p=5, d_model=8, heads=2, d_mlp=16).operand_embeddings()
    assert e.shape == (5, 8)


FOURIER_RUN = [
    "--seed_everything=0",
    "--model.alpha=1",
    "--model.loss=cross_entropy",
    "--model.optimizer=sgd",
    "--model.lr=0.5",
    "--model.weight_decay=0.001",
    "--model.eval_points=5",
    "--trainer.max_steps=20",
    "--model.net=grokkit.models.TwoLayerReLU",
    "--model.net.init_args.p=13",
    "--model.net.init_args.width=32",
    "--data=grokkit.data.ModularArithmeticData",
    "--data.init_args.p=13",
]


def _fit(tmp_path: Path, top_k: int = 3, *extra: str) -> int:
    callbacks = (
        "--trainer.callbacks=[{class_path: grokkit.callbacks.FourierProbe, "
        f"init_args: {{top_k: {top_k}}}}}]"
    )
    return main(["fit", *FOURIER_RUN, callbacks, *extra, f"--run_dir={tmp_path / 'run'}"])


def test_probe_columns_in_a_run(tmp_path):
    assert _fit(tmp_path) == 0
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        share, keys = float(row["fourier/top_share"]), [row[f"fourier/key_{i}"] for i in (1, 2, 3)]
        assert 3 / 6 - 1e-9 <= share <= 1  # top 3 of p // 2 = 6 frequencies hold at least half
        assert 1 / 6 - 1e-9 <= float(row["fourier/unit_top1_share"]) <= 1
        assert len({float(k) for k in keys}) == 3 and all(1 <= float(k) <= 6 for k in keys)
        assert float(row["fourier/restricted_loss"]) > 0 and float(row["fourier/excluded_loss"]) > 0
    assert (tmp_path / "run" / "curves.png").is_file()


@pytest.mark.parametrize(
    "top_k, extra, message",
    [
        (3, ["--data.init_args.operation=mul"], "FourierProbe needs modular addition or subtr"),
        (7, [], "FourierProbe.top_k=7 exceeds the 6 frequencies of p=13"),
    ],
)
def test_probe_refuses_what_it_cannot_read(tmp_path, capsys, top_k, extra, message):
    assert _fit(tmp_path, top_k, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
