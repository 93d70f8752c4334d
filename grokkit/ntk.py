"""The empirical neural tangent kernel (NTK) of a net on a set of probe inputs, and the kernel
alignments used to watch the kernel regime end (paper section 1: early phase = NTK predictor)."""

import math

import torch
from torch.func import functional_call, jacrev, vmap

Tensor = torch.Tensor

# Jacobian bytes per jacrev call on the CPU: blocks this small are recycled by the allocator
# (glibc maps larger ones afresh, page-faulting each time): 1.3-1.6x faster on the E3 net.
_CPU_BLOCK_BYTES = 8 * 2**20


def empirical_ntk(net: torch.nn.Module, x: Tensor, max_bytes: int = 256 * 2**20) -> Tensor:
    """The empirical (trace) NTK of ``net`` on the probe inputs ``x``: a float64 (n, n) CPU
    tensor. In closed form where the net has one (a ``trace_ntk(x)`` method: the
    two-layer ReLU net, the MLP and the matrix factorization), from Jacobians otherwise
    (``jacobian_ntk``)."""
    closed_form = getattr(net, "trace_ntk", None)
    if closed_form is not None and all(p.requires_grad for p in net.parameters()):
        return closed_form(x).to(torch.float64).cpu()
    return jacobian_ntk(net, x, max_bytes)


def jacobian_ntk(net: torch.nn.Module, x: Tensor, max_bytes: int = 256 * 2**20) -> Tensor:
    """The empirical NTK K[i, j] = Σ_outputs ⟨∂f(x_i)/∂θ, ∂f(x_j)/∂θ⟩ on the probe inputs
    ``x`` (n, ...), at the net's current parameters θ; a float64 (n, n) CPU tensor.

    For a net with several outputs f = (f_1, …, f_C) this is the *trace* NTK: the sum over
    outputs of the per-output kernels, K = Σ_c J_c J_cᵀ with J_c the (n, #θ) Jacobian of f_c
    (the cross-output blocks ⟨∂f_c(x_i), ∂f_d(x_j)⟩, c ≠ d, are not included). For a scalar net
    it is the usual NTK.

    Computed with torch.func (``vmap`` over probe points of ``jacrev`` of a one-point
    ``functional_call``) in the net's dtype and on its device; the Gram products and the kernel
    are float64 whatever the net's dtype, and the kernel is returned on the CPU (small: n×n).
    Jacobians are built in chunks of outputs and, when all probe points do not fit at once, of
    probe points, so that no more than about ``max_bytes`` of Jacobian exist at a time (e.g. the
    paper's 2-layer net with p = 97 outputs and ~3·10^5 parameters, on 128 points, at 256 MiB:
    one output at a time). The parameters, their gradients and the net's train/eval mode are
    left as they were.

    Cost: about n·C·#θ Jacobian entries written and n²·C·#θ multiply-adds. Measured on one CPU
    core: 0.01 s for the quickstart's diagonal net (d = 10^4, n = 128), but ~25 s for the
    paper's E3 net (p = 97 outputs, width 1024, n = 128; ~10 s at n = 64, ~4 s at n = 32).

    Args:
        net: the model; f(x) = net(x) with x a batch, output (n,) or (n, C) (or (n, ...),
            flattened per point).
        x: probe inputs, a batch the net accepts.
        max_bytes: memory budget for the Jacobian chunks.
    """
    # the trained parameters (frozen ones, and buffers, enter as constants)
    params = {name: p.detach() for name, p in net.named_parameters() if p.requires_grad}
    n = x.shape[0]
    if params:
        x = x.to(next(iter(params.values())).device)
    if n == 0 or not params:
        return torch.zeros(n, n, dtype=torch.float64)

    def outputs(theta: dict[str, Tensor], xi: Tensor, lo: int, hi: int | None) -> Tensor:
        return functional_call(net, theta, (xi.unsqueeze(0),)).reshape(-1)[lo:hi]

    with torch.no_grad():
        num_outputs = outputs(params, x[0], 0, None).numel()
    # Bytes of Jacobian per (probe point, output) pair.
    pair_bytes = max(1, sum(p.numel() * p.element_size() for p in params.values()))
    if n * pair_bytes <= max_bytes:  # all probe points at once, as many outputs as fit
        per_chunk, group = min(num_outputs, max(1, max_bytes // (n * pair_bytes))), n
    else:  # one output at a time, two groups of probe points at once
        per_chunk, group = 1, max(1, max_bytes // (2 * pair_bytes))
    # Points per jacrev call (see _CPU_BLOCK_BYTES); the Jacobian buffers are allocated once.
    block_bytes = _CPU_BLOCK_BYTES if x.device.type == "cpu" else max_bytes
    block = max(1, min(group, block_bytes // (per_chunk * pair_bytes)))
    groups = [slice(s, min(s + group, n)) for s in range(0, n, group)]

    def new_buffers() -> dict[str, Tensor]:
        """Jacobian storage for one group, allocated once and refilled for every chunk."""
        return {
            name: torch.empty(group, per_chunk * p.numel(), dtype=p.dtype, device=p.device)
            for name, p in params.items()
        }

    def jacobian(buffers: dict[str, Tensor], points: Tensor, lo: int, hi: int) -> list[Tensor]:
        """∂f_c(x_i)/∂θ for the points and outputs lo ≤ c < hi, as one (points, (hi − lo)·#θ_t)
        view of ``buffers`` per parameter tensor θ_t."""
        views = [
            buffers[name][: len(points), : (hi - lo) * p.numel()] for name, p in params.items()
        ]
        for s in range(0, len(points), block):
            chunk = points[s : s + block]
            jac = vmap(jacrev(outputs), in_dims=(None, 0, None, None))(params, chunk, lo, hi)
            for view, name in zip(views, params, strict=True):
                view[s : s + len(chunk)] = jac[name].reshape(len(chunk), -1)
            del jac
        return views

    def gram(a: list[Tensor], b: list[Tensor]) -> Tensor:
        # In float64: a float32 product's rounding (~1e-7·max) fills a rank-deficient NTK's
        # null space (W2 = 0, width < n) with eigenvalues a min-norm kernel predictor inverts.
        # The float32 Jacobian's own rounding lands there only ~1e-14·max, below its cutoff.
        return sum(ja.double() @ jb.double().T for ja, jb in zip(a, b, strict=True)).cpu()

    k = torch.zeros(n, n, dtype=torch.float64)
    row_buffers = new_buffers()
    col_buffers = new_buffers() if len(groups) > 1 else row_buffers
    with torch.no_grad():  # torch.func transforms still differentiate inside
        for lo in range(0, num_outputs, per_chunk):
            hi = min(lo + per_chunk, num_outputs)
            for a, rows in enumerate(groups):
                ja = jacobian(row_buffers, x[rows], lo, hi)
                k[rows, rows] += gram(ja, ja)
                for cols in groups[a + 1 :]:
                    block_k = gram(ja, jacobian(col_buffers, x[cols], lo, hi))
                    k[rows, cols] += block_k
                    k[cols, rows] += block_k.T
    return k


def frobenius_cosine(k1: Tensor, k2: Tensor) -> float:
    """⟨K1, K2⟩_F / (‖K1‖_F ‖K2‖_F), in float64 and clipped to [−1, 1]: the alignment of the
    current kernel with the initial one (1 = same kernel up to scale). NaN if either is 0."""
    k1, k2 = k1.double(), k2.double()
    norms = (torch.linalg.matrix_norm(k1) * torch.linalg.matrix_norm(k2)).item()
    if norms == 0 or not math.isfinite(norms):
        return math.nan
    return max(-1.0, min(1.0, (k1 * k2).sum().item() / norms))


def kernel_angle(k1: Tensor, k2: Tensor) -> float:
    """The angle (radians, in [0, π]) between K1 and K2 as vectors of the Frobenius inner
    product, arccos(frobenius_cosine(K1, K2)), computed stably for nearly equal kernels as
    2·atan2(‖a − b‖, ‖a + b‖) with a = K1/‖K1‖, b = K2/‖K2‖. NaN if either kernel is 0."""
    k1, k2 = k1.double(), k2.double()
    n1, n2 = torch.linalg.matrix_norm(k1), torch.linalg.matrix_norm(k2)
    if n1.item() == 0 or n2.item() == 0:
        return math.nan
    a, b = k1 / n1, k2 / n2
    return 2 * math.atan2(
        torch.linalg.matrix_norm(a - b).item(), torch.linalg.matrix_norm(a + b).item()
    )


def center(k: Tensor) -> Tensor:
    """H·K·H with H = I − 11ᵀ/n: subtract the row and column means, add back the grand mean."""
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()


def target_gram(target: Tensor) -> Tensor:
    """Y = y·yᵀ for a (n,) float target (±1 labels or real values), T·Tᵀ for a (n, C) target
    matrix (a one-hot matrix gives Y_ij = [class_i = class_j]); float64."""
    if target.dim() == 1:
        if not target.is_floating_point():
            raise ValueError(
                "a 1-d target must be float (±1 labels or real values); one-hot encode class "
                "indices to a (n, C) matrix"
            )
        t = target.double()
        return torch.outer(t, t)
    if target.dim() == 2:
        t = target.double()
        return t @ t.T
    raise ValueError(f"target must be (n,) or (n, C), got shape {tuple(target.shape)}")


def centered_alignment(k: Tensor, target: Tensor) -> float:
    """Centered kernel-target alignment (Cortes, Mohri & Rostamizadeh 2012):
    A(Kc, Yc) = ⟨Kc, Yc⟩_F / (‖Kc‖_F ‖Yc‖_F), with Kc = HKH, Yc = HYH, H = I − 11ᵀ/n.

    Y = y·yᵀ for a (n,) float ``target`` (±1 labels or real-valued regression targets), or the
    Gram T·Tᵀ of a (n, C) matrix (pass one-hot rows for class indices). Invariant to K → cK
    (c > 0) and to adding a constant to K; 1 when K ∝ Y up to such changes. NaN when the
    centered kernel or target is 0 (e.g. all labels equal).
    """
    y = target_gram(target.to(k.device))
    if not (k.dim() == 2 and k.shape[0] == k.shape[1] == y.shape[0]):
        raise ValueError(f"kernel of shape {tuple(k.shape)} does not match {y.shape[0]} targets")
    return frobenius_cosine(center(k.double()), center(y))
