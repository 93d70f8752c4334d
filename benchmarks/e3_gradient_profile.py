"""Where one gradient evaluation of the paper's E3 net goes (p = 97, width 1024, 40% train,
α = 10): wall time per evaluation at a thread count, then PyTorch's profiler table by operator
(matrix products: arithmetic; indexing, ReLU and its backward: memory-bound passes over the
3 764 × 1 024 hidden layer).

    .venv/bin/python benchmarks/e3_gradient_profile.py [--threads 1]
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import profile

from grokkit.data import ModularArithmeticData
from grokkit.models import TwoLayerReLU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = ModularArithmeticData().build()["train"]
    net = TwoLayerReLU(97, 1024)
    net.scale_init_(10.0)
    params = list(net.parameters())

    def gradient() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(F.cross_entropy(net(x), y), params)

    for _ in range(5):
        gradient()
    start = time.perf_counter()
    for _ in range(args.repeats):
        gradient()
    seconds = (time.perf_counter() - start) / args.repeats
    print(f"E3 gradient evaluation, {args.threads} thread(s): {seconds * 1e3:.1f} ms")
    with profile(record_shapes=True) as prof:
        for _ in range(10):
            gradient()
    table = prof.key_averages(group_by_input_shape=True)
    print(table.table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
