"""How close the net is to each of the theory's reference predictors (arXiv 2311.18817, §3).

Early on a large-init net behaves like its initial NTK's kernel predictor; after ~ln(α)/λ it
approaches the min-norm / max-margin solution. The references depend on the data (and the
initial kernel) only, so they are computed once, at the first evaluation, and cached in the run
directory (``theory/references.npz`` and ``theory/references.json``); a resumed run loads them.
"""

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from grokkit.callbacks.base import EvaluationCallback
from grokkit.console import say
from grokkit.data.full_batch import Batch
from grokkit.errors import require
from grokkit.models import DiagonalNet, MatrixFactorization
from grokkit.rundir import write_json_atomic

LINEAR_REFERENCES = ("l2", "l1", "lq")  # the diagonal net's max-margin references, by norm


class ImplicitBiasProbe(EvaluationCallback):
    """Adds probe columns to each evaluation row; the references' own metrics go once into
    ``summary.json`` (key ``references``), the W&B summary and the console.

    - Diagonal nets (linear classification): the max-L2-margin classifier (the kernel regime's
      predictor: the initial NTK is isotropic) and the late phase's max-margin classifier in
      the depth's norm, Σ_j |w_j|^(2/L): max-L1 at depth L = 2 (``max_l1_margin``), the
      quasi-norm q = 2/L at L ≥ 3 (``max_lq_margin``, a KKT point: see
      ``grokkit.theory.max_margin_classifier``), none at L = 1 (a linear model: its late phase
      is the kernel's). Columns ``probe/cos_l2`` and ``probe/cos_l1`` (or ``probe/cos_lq``):
      cosine of the effective weight w(θ) = u^L − v^L with each.
    - Matrix factorization (completion): the zero-fill predictor (observed entries and their
      mirrors, zero elsewhere: the kernel regime's) and the min-nuclear-norm completion (the
      late phase's). Columns ``probe/dist_zero_fill`` and ``probe/dist_min_nuclear``:
      ‖W − W_ref‖_F / ‖W_ref‖_F.
    - Other nets: the kernel predictor of the NTK at initialization (hard-margin SVM, or the
      min-norm interpolant for regression) trained on the training set. Column
      ``probe/agree_kernel``: fraction of test points where the net's and the kernel
      predictor's predicted labels agree (regression: 1 − relative distance of test outputs).
      Skipped, with a message, when the kernel would take more than ``kernel_budget``
      Jacobian entries (train and test points × outputs × parameters) to compute.

    Args:
        every: compute at every ``every``-th evaluation point (and always at the first).
        kernel_budget: largest Jacobian (entries, all points) computed for the kernel reference.
    """

    def __init__(self, every: int = 1, kernel_budget: float = 2e9) -> None:
        super().__init__(every)
        require(
            kernel_budget > 0, f"ImplicitBiasProbe.kernel_budget must be > 0, got {kernel_budget}"
        )
        self.kernel_budget = kernel_budget
        self.references: dict[str, Any] | None = None  # metrics (JSON) of each reference
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, torch.Tensor] | None = None

    # ---- references -----------------------------------------------------------------------

    def _cache_dir(self, trainer: pl.Trainer) -> Path | None:
        for logger in trainer.loggers:
            if getattr(logger, "run_dir", None) is not None:
                return Path(logger.run_dir) / "theory"
        return None

    def _prepare(self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch) -> None:
        digest = _data_digest(batch)
        cache = self._cache_dir(trainer)
        if cache is not None and (cache / "references.json").exists():
            meta = json.loads((cache / "references.json").read_text())
            if meta.get("data_digest") == digest:
                self.references = meta["references"]
                with np.load(cache / "references.npz") as arrays:
                    self.arrays = dict(arrays)
                return
        if task.global_step > 0 and not isinstance(task.net, DiagonalNet | MatrixFactorization):
            # the kernel reference needs the initial parameters, which a resumed run no longer has
            self.references, self.arrays = {}, {}
            say("probe: no cached kernel reference to resume from; skipped", to_stderr=True)
            return
        self.references, self.arrays = _references(task, batch, self.kernel_budget, digest)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(cache / "references.npz", **self.arrays)
            write_json_atomic(
                cache / "references.json", {"data_digest": digest, "references": self.references}
            )
        for name, metrics in self.references.items():
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            say(f"reference {name}: {shown}")

    # ---- per evaluation -------------------------------------------------------------------

    @torch.no_grad()
    def on_row(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Batch, row: dict[str, float]
    ) -> None:
        if self.references is None:
            self._prepare(trainer, task, batch)
        net = task.net
        # In torch on the net's device: numpy's BLAS threads, woken at every evaluation, would
        # spin against PyTorch's threads between evaluations and slow training down.
        ref = self._tensors(next(net.parameters()).device)
        if isinstance(net, DiagonalNet) and "w_l2" in ref:
            w = net.effective_weight().detach().double()
            for name in LINEAR_REFERENCES:
                if f"w_{name}" in ref:
                    row[f"probe/cos_{name}"] = _cosine(w, ref[f"w_{name}"])
        elif isinstance(net, MatrixFactorization) and "w_zero_fill" in ref:
            matrix = net.matrix().detach().double()
            for name in ("zero_fill", "min_nuclear"):
                target = ref[f"w_{name}"]
                row[f"probe/dist_{name}"] = ((matrix - target).norm() / target.norm()).item()
        elif "kernel_test_outputs" in ref:
            x_test, _ = batch["test"]
            ours = net(x_test).detach().double()
            kind = str(self.arrays["kernel_kind"])
            row["probe/agree_kernel"] = _agreement(ours, ref["kernel_test_outputs"], kind)

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The reference arrays as float64 tensors on ``device`` (converted once)."""
        if self.tensors is None:
            self.tensors = {
                k: torch.as_tensor(v, dtype=torch.float64, device=device)
                for k, v in self.arrays.items()
                if v.dtype.kind == "f"
            }
        return self.tensors


# References that depend on the data and the net's kind alone (not on its parameters), per
# process: the members of an ensemble, which share their data, solve them once (E5's
# min-nuclear-norm completion takes ~6 s).
_DATA_ONLY: dict[tuple, tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]] = {}
_DATA_ONLY_LOCK = threading.Lock()


def _references(
    task: pl.LightningModule, batch: Batch, kernel_budget: float, digest: str
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """``compute_references``, solved once per process for equal data where the net's
    parameters do not enter (the diagonal net's margins, the matrix completions)."""
    net = task.net
    if not isinstance(net, DiagonalNet | MatrixFactorization):
        return compute_references(task, batch, kernel_budget)
    shape = tuple(next(net.parameters()).shape)
    key = (digest, type(net), getattr(net, "degree", None), shape, task.hparams.loss)
    with _DATA_ONLY_LOCK:  # the other members wait for the first one's solve
        if key not in _DATA_ONLY:
            _DATA_ONLY[key] = compute_references(task, batch, kernel_budget)
        references, arrays = _DATA_ONLY[key]
    return dict(references), dict(arrays)


def compute_references(
    task: pl.LightningModule, batch: Batch, kernel_budget: float
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """The references for ``task``'s net and data: ({name: metrics}, {array name: array})."""
    from grokkit.theory import (
        kernel_predictor,
        max_margin_classifier,
        min_nuclear_norm_completion,
        zero_fill_completion,
    )

    (x_train, y_train), (x_test, y_test) = batch["train"], batch["test"]
    objective, net = task.objective, task.net
    references: dict[str, dict[str, float]] = {}
    arrays: dict[str, np.ndarray] = {}

    def score(name: str, test_outputs: np.ndarray, extra: dict[str, float]) -> None:
        outputs = torch.as_tensor(test_outputs, dtype=torch.float64, device=y_test.device)
        y64 = y_test.double() if y_test.is_floating_point() else y_test
        # classification: the accuracy (a max-margin direction's loss depends on its arbitrary
        # scale); regression: the test loss
        if objective.accuracy is not None:
            metrics = {"test/acc": objective.accuracy(outputs, y_test).item()}
        else:
            metrics = {"test/loss": objective.loss(outputs, y64).item()}
        references[name] = {**metrics, **extra}

    if isinstance(net, DiagonalNet):
        x, y = _np(x_train), _np(y_train)
        late = 2 / net.degree  # min ‖θ‖² at margin 1 is min Σ_j |w_j|^(2/L)
        for norm in (2,) if late == 2 else (2, late):
            clf = max_margin_classifier(x, y, norm=norm)
            name = {2: "l2", 1: "l1"}.get(norm, "lq")
            arrays[f"w_{name}"] = clf.w
            extra = {"margin": clf.margin} | ({"q": norm} if name == "lq" else {})
            score(f"max_{name}_margin", _np(x_test) @ clf.w, extra)
    elif isinstance(net, MatrixFactorization):
        d = net.u.shape[0]
        rows, cols = _np(x_train[:, 0]).astype(int), _np(x_train[:, 1]).astype(int)
        values = _np(y_train)
        test_rows, test_cols = _np(x_test[:, 0]).astype(int), _np(x_test[:, 1]).astype(int)
        for name, solve in (
            ("zero_fill", zero_fill_completion),
            ("min_nuclear", min_nuclear_norm_completion),
        ):
            matrix = solve(d, rows, cols, values)
            arrays[f"w_{name}"] = matrix
            score(
                name,
                matrix[test_rows, test_cols],
                {"nuclear_norm": float(np.linalg.svd(matrix, compute_uv=False).sum())},
            )
    else:
        n_outputs = net(x_train[:1]).reshape(1, -1).shape[1]
        n_params = sum(p.numel() for p in net.parameters())
        size = (len(x_train) + len(x_test)) * n_outputs * n_params
        if size > kernel_budget:
            say(
                f"probe: kernel reference skipped: the NTK needs {size:.3g} Jacobian "
                f"entries (train and test points × outputs × parameters) > "
                f"kernel_budget={kernel_budget:.3g}",
                to_stderr=True,
            )
            return references, arrays
        from grokkit.ntk import empirical_ntk

        kind = _kind(task.hparams.loss, y_train)
        k_all = empirical_ntk(net, torch.cat([x_train, x_test])).cpu().numpy()
        n = len(x_train)
        outputs = kernel_predictor(k_all[:n, :n], _np(y_train), k_all[n:, :n], kind)
        arrays["kernel_test_outputs"], arrays["kernel_kind"] = outputs, np.array(kind)
        score("initial_ntk_kernel", outputs, {})
    return references, arrays


def _kind(loss: str, y: torch.Tensor) -> str:
    if loss == "logistic":
        return "binary"
    if loss == "mse" and y.is_floating_point():
        return "regression"
    return "multiclass"


def _agreement(ours: torch.Tensor, ref: torch.Tensor, kind: str) -> float:
    """Fraction of test points with the same predicted label; regression: 1 − the relative
    distance of the test outputs."""
    if kind == "multiclass":
        return (ours.argmax(1) == ref.argmax(1)).double().mean().item()
    if kind == "binary":
        return (ours.sign() == ref.sign()).double().mean().item()
    return (1 - (ours - ref).norm() / ref.norm()).item()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a @ b / (a.norm() * b.norm()).clamp_min(1e-300)).item()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def _data_digest(batch: Batch) -> str:
    """Identifies the data set, so a cache from other data is never used: the training split
    in full, the test split by its shape and ~10^6 evenly spaced entries (the paper's E1 test
    set is 4 GB)."""
    h = hashlib.sha256()
    for split in ("train", "test"):
        for t in batch[split]:
            flat = t.detach().flatten()
            if split == "test":
                h.update(str(tuple(t.shape)).encode())
                flat = flat[:: max(1, flat.numel() // 10**6)]
            h.update(flat.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
