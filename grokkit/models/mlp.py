"""ReLU MLPs: the paper's 2-layer net for modular arithmetic (E3/E4) and Omnigrok's deep MLP."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from grokkit.errors import require
from grokkit.models.base import HomogeneousNet, check_operand_pairs


class TwoLayerReLU(HomogeneousNet):
    """f(a, b) = W2·ReLU(W1·[onehot(a); onehot(b)] + b1), bias on the first layer only, so f is
    2-homogeneous in θ = (W1, b1, W2). W1·[onehot(a); onehot(b)] is computed as the lookup
    W1[:, a] + W1[:, p + b], with ``F.embedding``: its CPU backward sums each row's gradient in
    input order, where indexing's (``w1[a]``) adds them with atomics from several threads, in an
    order that changes from run to run (and is slower).

    He initialization: W1 ~ N(0, 2/(2p)) (ReLU gain, fan-in 2p), W2 ~ N(0, 1/width) (linear
    gain), b1 = 0; the task then multiplies everything by α.

    Args:
        p: number of tokens per operand (the modulus) and of output classes.
        width: hidden width h.
        zero_last_layer: start from W2 = 0 (zero output at init, as the theory assumes).
    """

    degree = 2

    def __init__(self, p: int, width: int = 1024, zero_last_layer: bool = False) -> None:
        super().__init__()
        require(p >= 2, f"model.net.p must be >= 2, got {p}")
        require(width >= 1, f"model.net.width must be >= 1, got {width}")
        self.p = p
        self.w1 = nn.Parameter(torch.randn(2 * p, width) * math.sqrt(2.0 / (2 * p)))
        self.b1 = nn.Parameter(torch.zeros(width))
        w2 = torch.zeros(width, p) if zero_last_layer else torch.randn(width, p) / math.sqrt(width)
        self.w2 = nn.Parameter(w2)
        self.zero_output_at_init = zero_last_layer

    def check_input(self, x: torch.Tensor) -> None:
        check_operand_pairs(x, self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.embedding(x[:, 0], self.w1) + F.embedding(self.p + x[:, 1], self.w1) + self.b1
        return torch.relu(hidden) @ self.w2

    def operand_embeddings(self) -> list[torch.Tensor]:
        """Each operand's embedding, (p, width) with row x for residue x: W1's two halves."""
        return [self.w1[: self.p], self.w1[self.p :]]

    @torch.no_grad()
    def trace_ntk(self, x: torch.Tensor) -> torch.Tensor:
        """The trace NTK Σ_c ⟨∇f_c(x_i), ∇f_c(x_j)⟩ on the pairs ``x`` in closed form, float64:

            K(x, x') = C·⟨r, r'⟩ + Σ_k m_k m'_k ‖W2[k, :]‖² · ([a = a'] + [b = b'] + 1)

        with r = ReLU(h), m = 1[h > 0] the hidden activations and derivative masks and C the
        number of outputs: the first term is ∂f/∂W2, the second ∂f/∂W1 (one-hot inputs: ⟨x, x'⟩
        counts the shared operands) and ∂f/∂b1. O(n²·width) instead of the O(n²·C·#θ) of
        Jacobians (``grokkit.ntk.jacobian_ntk``): at the paper's width thousands of times faster.
        """
        w1, b1, w2 = (t.detach().to(torch.float64) for t in (self.w1, self.b1, self.w2))
        hidden = w1[x[:, 0]] + w1[self.p + x[:, 1]] + b1
        active, mask = hidden.clamp(min=0), (hidden > 0).to(torch.float64)
        a, b = x[:, 0:1], x[:, 1:2]
        shared = (a == a.T).to(torch.float64) + (b == b.T).to(torch.float64)
        outputs = w2.shape[1]
        return outputs * (active @ active.T) + ((mask * (w2 * w2).sum(1)) @ mask.T) * (shared + 1)


class MLP(HomogeneousNet):
    """Fully connected ReLU net with biases (not homogeneous), PyTorch's default init; the task
    multiplies every parameter by α (Omnigrok's large initialization).

    Args:
        in_dim: input features.
        out_dim: outputs.
        width: hidden width.
        depth: number of linear layers (≥ 1).
    """

    degree = None

    def __init__(self, in_dim: int, out_dim: int, width: int = 200, depth: int = 3) -> None:
        super().__init__()
        require(depth >= 1, f"model.net.depth must be >= 1, got {depth}")
        require(width >= 1, f"model.net.width must be >= 1, got {width}")
        dims = [in_dim] + [width] * (depth - 1) + [out_dim]
        layers: list[nn.Module] = []
        for k, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out))
            if k < depth - 1:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim

    def check_input(self, x: torch.Tensor) -> None:
        require(
            x.shape[-1] == self.in_dim,
            f"model.net.in_dim={self.in_dim} does not match the data's {x.shape[-1]} features",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @torch.no_grad()
    def trace_ntk(self, x: torch.Tensor) -> torch.Tensor:
        """The trace NTK Σ_c ⟨∇f_c(x_i), ∇f_c(x_j)⟩ on the inputs ``x``, float64, layer by layer:

            K(x, x') = Σ_l ⟨Δ_l(x), Δ_l(x')⟩_F · (⟨a_{l−1}(x), a_{l−1}(x')⟩ + 1)

        since ∂f_c/∂W_l = δ_{l,c}·a_{l−1}ᵀ and ∂f_c/∂b_l = δ_{l,c}, with a_{l−1} layer l's input
        and Δ_l = (δ_{l,1} … δ_{l,C}) the outputs' backward vectors at its pre-activation (the
        identity at the last layer, then Δ_{l−1} = 1[z_{l−1} > 0] ⊙ W_lᵀΔ_l). O(n²·width·C)
        per layer instead of the Jacobians' O(n²·C·#θ): on the Omnigrok digits config (1 797
        points, 10 outputs, 9.5·10^4 parameters) about a second instead of a minute.
        """
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        inputs, masks = [], []
        a = x.reshape(len(x), -1).to(torch.float64)
        for k, layer in enumerate(linears):
            inputs.append(a)
            z = a @ layer.weight.detach().double().T + layer.bias.detach().double()
            if k < len(linears) - 1:
                masks.append((z > 0).to(torch.float64))
                a = z.clamp(min=0)
        outputs = linears[-1].out_features
        delta = torch.eye(outputs, dtype=torch.float64).expand(len(x), outputs, outputs)
        kernel = torch.zeros(len(x), len(x), dtype=torch.float64)
        for k in range(len(linears) - 1, -1, -1):
            flat = delta.reshape(len(x), -1)
            kernel += (flat @ flat.T) * (inputs[k] @ inputs[k].T + 1)
            if k > 0:  # δ at layer k's input: back through W_k, then the ReLU's mask
                weight = linears[k].weight.detach().double()
                delta = torch.einsum("oi,noc->nic", weight, delta) * masks[k - 1][:, :, None]
        return kernel
