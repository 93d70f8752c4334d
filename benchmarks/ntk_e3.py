"""The NTK of the paper's E3 net (two-layer ReLU, p = 97, width 1024) on a 128-point probe: the
closed form (``TwoLayerReLU.trace_ntk``, what ``grokkit.ntk.empirical_ntk`` uses for it)
against the generic torch.func Jacobian path (``jacobian_ntk``), in the same process.
Prints both wall times, the speed-up and the relative difference of the two kernels. The cost of
the Jacobian path is arithmetic (n·C·#θ Jacobian entries, n²·C·#θ multiply-adds); the closed
form's is O(n²·width).

    .venv/bin/python benchmarks/ntk_e3.py [--probe 128]
"""

import argparse
import time

import torch

from grokkit.data import ModularArithmeticData
from grokkit.models import TwoLayerReLU
from grokkit.ntk import jacobian_ntk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", type=int, default=128)
    args = parser.parse_args()
    data = ModularArithmeticData(p=97, train_fraction=0.4, seed=0).build()
    x = data["train"][0][: args.probe]
    torch.manual_seed(0)
    net = TwoLayerReLU(97, width=1024)  # W2 not zeroed, so every term of the kernel counts
    net.scale_init_(10.0)
    timings = {}
    closed_form = lambda net, x: net.trace_ntk(x)  # noqa: E731
    for name, fn in (("closed form", closed_form), ("torch.func Jacobians", jacobian_ntk)):
        start = time.perf_counter()
        kernel = fn(net, x)
        timings[name] = (time.perf_counter() - start, kernel)
    (fast, k_fast), (slow, k_slow) = timings["closed form"], timings["torch.func Jacobians"]
    print(f"E3 net, {args.probe} probe points, {torch.get_num_threads()} threads")
    print(f"  closed form:          {fast * 1e3:9.1f} ms")
    print(f"  torch.func Jacobians: {slow * 1e3:9.1f} ms")
    print(f"  speed-up {slow / fast:.0f}x (target >= 100x); relative difference "
          f"{((k_fast - k_slow).norm() / k_slow.norm()).item():.2e} (target <= 1e-6)")  # fmt: skip


if __name__ == "__main__":
    main()
