"""GrokTask: the one LightningModule: a homogeneous net, a loss, full-batch training, evaluation."""

import math
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.trainer.states import TrainerFn

from grokkit.batching import current_batcher
from grokkit.callbacks.base import EvaluationCallback
from grokkit.console import say
from grokkit.data.full_batch import Batch
from grokkit.errors import require
from grokkit.integrators import AdaptiveFlow, IntegrationError
from grokkit.lightning_adapter import count_optimizer_steps, publish_row, run_early_stopping
from grokkit.metrics import SplitMetrics
from grokkit.models.base import HomogeneousNet
from grokkit.objectives import OBJECTIVES
from grokkit.schedule import EvalSchedule, FlowSchedule, gd_flow_time, warmup_lr
from grokkit.theory.transition import predicted_transition_time


class GrokTask(pl.LightningModule):
    """Train ``net`` from θ0 = α·θ̄ by full-batch gradient descent; evaluate on a log schedule.

    Each Lightning training step runs the whole chunk of gradient steps up to the next
    evaluation point with the raw optimizer (manual optimization), then evaluates once. Lightning's
    bookkeeping therefore runs a few hundred times per run, and ``trainer.global_step`` still
    counts gradient steps, so ``trainer.max_steps`` is the number of gradient steps.

    Args:
        net: the network (its base init θ̄; multiplied here by ``alpha``).
        alpha: init scale α (θ0 = α·θ̄); for the diagonal net ‖θ0‖ = α.
        loss: "logistic" (binary ±1 labels), "cross_entropy" (class indices), "mse", or
            "mse_onehot" (squared error against one-hot targets of class indices).
        optimizer: "sgd" (plain gradient descent with coupled weight decay, the paper's:
            θ ← θ − η(∇L + λθ)) or "adamw" (decoupled weight decay).
        lr: learning rate η (after warm-up).
        weight_decay: λ.
        lr_warmup_steps: steps of geometric warm-up from ``lr_warmup_start`` to ``lr``.
        lr_warmup_start: first learning rate of the warm-up (required when warming up).
        lr_normalize_by_loss: step on log L instead of L (loss computed stably in float64):
            θ ← θ − η∇L/L, so the effective step size η/L grows as the loss falls and
            gradient-flow time advances on a log scale (paper Fig. 4, with λ = 0). Time and
            loss are carried as logarithms, so t beyond 10^308 and L below 10^−308 stay
            representable: rows gain ``log10_time`` and ``train/log_loss``.
        lr_normalize_below_log_loss: with ``lr_normalize_by_loss``, take plain steps at
            ``lr_plain`` until log L falls below this value, normalized steps after (the
            reference scripts' schedule: −5, with ``lr_plain`` = 10η); None: normalized
            from the first step.
        lr_plain: learning rate of those plain steps (default ``lr``).
        batch_size: None for full-batch gradient descent (the paper's); otherwise each step
            uses a random minibatch of this size from the training set (Omnigrok).
        eval_points: number of log-spaced evaluation points (plus the initialization): steps
            in [1, max_steps] for ``gd``; for ``adaptive``, flow times from the t of gd's first
            step (``lr``, or ``lr_warmup_start`` with a warm-up) to the horizon.
        eval_batch_size: None to evaluate each split in one forward pass; otherwise in chunks
            of this many samples, for evaluation sets too large for one pass (same values).
        integrator: "gd" (fixed-step gradient descent, the paper's algorithm) or "adaptive"
            (the gradient flow dθ/dt = −∇L − λθ integrated under error control, see
            ``grokkit.integrators``; full batch, ``sgd`` only; the warm-up keys do not apply).
        rtol: the adaptive integrator's local error tolerance, relative to ‖θ‖.
        max_flow_time: stop when the flow time t reaches this (either integrator; the run
            also stops at ``trainer.max_steps``). Default for ``adaptive``: the t that ``gd``
            reaches in ``trainer.max_steps`` steps of this config.
    """

    def __init__(
        self,
        net: HomogeneousNet,
        alpha: float = 1.0,
        loss: Literal["logistic", "cross_entropy", "mse", "mse_onehot"] = "logistic",
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.01,
        weight_decay: float = 0.0,
        lr_warmup_steps: int = 0,
        lr_warmup_start: float | None = None,
        lr_normalize_by_loss: bool = False,
        lr_normalize_below_log_loss: float | None = None,
        lr_plain: float | None = None,
        batch_size: int | None = None,
        eval_points: int = 300,
        eval_batch_size: int | None = None,
        integrator: Literal["gd", "adaptive"] = "gd",
        rtol: float = 1e-3,
        max_flow_time: float | None = None,
    ) -> None:
        super().__init__()
        require(alpha > 0, f"model.alpha (init scale) must be > 0, got {alpha}")
        require(lr > 0, f"model.lr (learning rate) must be > 0, got {lr}")
        require(weight_decay >= 0, f"model.weight_decay must be >= 0, got {weight_decay}")
        require(lr_warmup_steps >= 0, f"model.lr_warmup_steps must be >= 0, got {lr_warmup_steps}")
        require(
            lr_warmup_steps == 0 or (lr_warmup_start is not None and lr_warmup_start > 0),
            f"model.lr_warmup_start must be > 0 when warming up, got {lr_warmup_start}",
        )
        require(
            not (lr_normalize_by_loss and weight_decay > 0),
            f"model.lr_normalize_by_loss needs model.weight_decay = 0 (got {weight_decay}): "
            f"with a loss-normalized step the decay would not follow gradient flow",
        )
        require(lr_plain is None or lr_plain > 0, f"model.lr_plain must be > 0, got {lr_plain}")
        require(rtol > 0, f"model.rtol must be > 0, got {rtol}")
        require(
            max_flow_time is None or max_flow_time > 0,
            f"model.max_flow_time must be > 0 (or null), got {max_flow_time}",
        )
        if integrator == "adaptive":
            require(
                optimizer == "sgd" and batch_size is None,
                "model.integrator=adaptive integrates the full-batch gradient flow: it needs "
                f"model.optimizer=sgd (got {optimizer}) and model.batch_size=null (got "
                f"{batch_size})",
            )
        if integrator == "adaptive" and lr_normalize_by_loss:
            require(
                lr_normalize_below_log_loss is None and lr_plain is None,
                "model.lr_normalize_below_log_loss and model.lr_plain set gd's plain steps; "
                "the adaptive integrator follows the flow of log L from the start (the same "
                "path): leave them null",
            )
            require(
                max_flow_time is None,
                "model.max_flow_time does not apply to a loss-normalized adaptive run (its "
                "clock is the log-L flow's s, not t): bound it with trainer.max_steps (s "
                "reaches max_steps·lr, as gd's normalized steps do) or trainer.max_time",
            )
        require(eval_points >= 1, f"model.eval_points must be >= 1, got {eval_points}")
        require(
            eval_batch_size is None or eval_batch_size >= 1,
            f"model.eval_batch_size must be >= 1 (or null for whole splits), got {eval_batch_size}",
        )
        require(
            batch_size is None or batch_size >= 1,
            f"model.batch_size must be >= 1 (or null for full batch), got {batch_size}",
        )
        self.save_hyperparameters(ignore=["net"])
        self.automatic_optimization = False
        self.net = net
        self.net.scale_init_(alpha)
        self.objective = OBJECTIVES[loss]
        self.flow_time = 0.0  # gradient-flow time t = Σ η over the steps taken
        self.log_flow_time = -math.inf  # ln t, kept for loss-normalized steps (t may overflow)
        self.plain_phase = True  # loss-normalized runs: still taking plain steps
        self.last_row: dict[str, float] | None = None
        self.diverged = False
        self.early_stopped = False  # an EarlyStopping callback ended the run
        self.stop_requested = False  # set from a signal handler; the chunk loop checks it
        self.schedule: EvalSchedule | FlowSchedule | None = None
        self.gradient_evaluations = 0  # every gradient computed (rejected trial steps included)
        self.flow: AdaptiveFlow | None = None
        self._flow_state: dict[str, Any] | None = None  # from a checkpoint, until training starts
        self._train_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._timer: Timer | bool | None = None  # trainer.max_time's callback (False: none)
        self._log_loss_now: float | None = None  # log L at the integrator's point (normalized)
        self._log_loss_last = math.nan  # log L at the last gradient the closure computed
        self._eval_metrics: dict[tuple[str, torch.device], SplitMetrics] = {}  # per split

    @property
    def alpha(self) -> float:
        return self.hparams.alpha

    @property
    def predicted_transition_time(self) -> float | None:
        """ln(α)/λ, the theory's switch time in gradient-flow time; None where the theory says
        nothing (see ``grokkit.theory.transition.predicted_transition_time``)."""
        h = self.hparams
        return predicted_transition_time(
            self.alpha,
            h.weight_decay,
            degree=self.net.degree,
            zero_output_at_init=self.net.zero_output_at_init,
            gradient_descent=h.optimizer == "sgd" and not h.lr_normalize_by_loss,
        )

    def lr_at(self, step: int) -> float:
        h = self.hparams
        return warmup_lr(step, h.lr, h.lr_warmup_steps, h.lr_warmup_start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        h = self.hparams
        if h.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        return torch.optim.SGD(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)

    # ---- training: one Lightning step = one chunk of gradient steps ----

    @property
    def horizon(self) -> float | None:
        """The flow time the run ends at (None: gd without max_flow_time, ends by steps)."""
        h = self.hparams
        if h.max_flow_time is not None or h.integrator == "gd":
            return h.max_flow_time
        steps = self.trainer.max_steps
        return gd_flow_time(steps, h.lr, h.lr_warmup_steps, h.lr_warmup_start)

    def time_budget_spent(self) -> bool:
        """Whether trainer.max_time has run out. Checked inside a chunk too: Lightning's Timer
        looks only between chunks, and one chunk of a stiff run can take many minutes."""
        if self._timer is None:
            self._timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), False)
        remaining = self._timer.time_remaining() if self._timer else None
        return remaining is not None and remaining <= 0

    @property
    def clock(self) -> float:
        """The time the horizon is measured in: flow time t, but for a loss-normalized adaptive
        run s, the time of the flow of log L that the integrator follows (dt = ds/L)."""
        return self.flow.t if self.flow is not None else self.flow_time

    @property
    def at_end(self) -> bool:
        """Whether the run has reached its end: max_steps, or the horizon on ``clock``."""
        horizon = self.horizon
        reached = horizon is not None and self.clock >= horizon
        return reached or self.global_step >= self.trainer.max_steps

    def on_train_start(self) -> None:
        h = self.hparams
        if h.integrator == "gd":
            self.schedule = EvalSchedule(self.trainer.max_steps, h.eval_points)
            return
        # the first evaluation where gd evaluates first: after one step (of the warm-up's start)
        self.schedule = FlowSchedule(self.horizon, h.eval_points, first=self.lr_at(0))
        potential = (lambda: self._log_loss_last) if h.lr_normalize_by_loss else None
        self.flow = AdaptiveFlow(
            list(self.net.parameters()),
            self._loss_gradient,
            h.weight_decay,
            rtol=h.rtol,
            potential=potential,
        )
        if self._flow_state is not None:
            self.flow.load_state_dict(self._flow_state)

    def _loss_gradient(self) -> tuple[torch.Tensor, ...]:
        """∇L at the net's current parameters, for the adaptive integrator (∇ log L for a
        loss-normalized run, whose log L is kept in ``_log_loss_last``)."""
        x, y = self._train_batch
        batcher = current_batcher()  # a member of an ensemble: evaluated with the others'
        grads = batcher.gradient(self, x, y) if batcher is not None else None
        if grads is not None:
            return grads
        params = list(self.net.parameters())
        with torch.enable_grad():
            if not self.hparams.lr_normalize_by_loss:
                return torch.autograd.grad(self.objective.loss(self.net(x), y), params)
            log_loss = self.objective.log_loss(self.net(x), y)
            self._log_loss_last = log_loss.item()
            return torch.autograd.grad(log_loss, params)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        if self.last_row is None:  # evaluate the initialization once, before the first step
            self.record(batch)
        if self.flow is not None:
            self._flow_chunk(batch)
            return
        start = self.global_step
        stop = self.schedule.next_after(start)
        optimizer = self.optimizers().optimizer  # the raw torch optimizer: no per-step hooks
        x, y = batch["train"]
        lr, warmup_steps = self.hparams.lr, self.hparams.lr_warmup_steps
        step = start
        batcher = current_batcher()  # a member of an ensemble: steps stacked with the others'
        if batcher is not None:
            step = batcher.run_chunk(self, x, y, start, stop)  # (start: it steps alone below)
        horizon = self.hparams.max_flow_time  # (t itself may be inf: loss-normalized runs)
        while step < stop and not (self.stop_requested or self.time_budget_spent()):
            if horizon is not None and self.flow_time >= horizon:
                break
            self.gradient_step(optimizer, x, y, self.lr_at(step) if step < warmup_steps else lr)
            step += 1
        count_optimizer_steps(self.trainer, step - start)
        self.gradient_evaluations += step - start
        self._end_chunk(batch, scheduled=step == stop)

    def _flow_chunk(self, batch: Batch) -> None:
        """Integrate the flow up to the next evaluation time (landing on it exactly)."""
        flow = self.flow
        target = self.schedule.next_after(flow.t)
        accepted = flow.accepted
        self._train_batch = batch["train"]
        normalized = self.hparams.lr_normalize_by_loss
        if normalized and self._log_loss_now is None:
            with torch.no_grad():
                self._log_loss_now = self.objective.log_loss(
                    self.net(batch["train"][0]), batch["train"][1]
                ).item()
        try:
            while flow.t < target and not (self.stop_requested or self.time_budget_spent()):
                h = flow.step(target)
                if normalized:
                    self._advance_log_time(h, self._log_loss_last)
                if self.global_step + flow.accepted - accepted >= self.trainer.max_steps:
                    break
        except IntegrationError as error:  # a non-finite gradient, or the step collapsed
            say(f"the integrator stopped at t = {flow.t:.6g}: {error}", to_stderr=True)
            self.diverged = True
        count_optimizer_steps(self.trainer, flow.accepted - accepted)
        if not normalized:
            self.flow_time = flow.t
        self.gradient_evaluations = flow.evaluations
        self._end_chunk(batch, scheduled=flow.t >= target)

    def _advance_log_time(self, h: float, log_loss: float) -> None:
        """t after a step of h in s along the flow of log L: dt = ds/L, integrated exactly for
        log L linear in s across the step (its values at both ends known; AdaptiveFlow's last
        evaluation in a step is at the accepted point)."""
        start, self._log_loss_now = self._log_loss_now, log_loss
        self._add_log_time(math.log(h) - start + log_mean_exp(start - log_loss))

    def _end_chunk(self, batch: Batch, scheduled: bool) -> None:
        """Record the evaluation row the chunk ended at. A stop request inside a chunk records
        nothing: the checkpoint written next holds the mid-chunk state, and the resumed run
        finishes the chunk and writes the scheduled row, so every row and every callback's
        cadence (counted in rows) match an uninterrupted run."""
        if self.stop_requested and not (scheduled or self.at_end):
            self.trainer.should_stop = True
            return
        diverged = self.diverged
        self.record(batch)
        self.diverged = self.diverged or diverged
        self.early_stopped = run_early_stopping(self.trainer) or self.early_stopped
        if self.diverged or self.stop_requested or self.at_end:
            self.trainer.should_stop = True

    def gradient_step(
        self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float
    ) -> None:
        if self.hparams.batch_size is not None:
            pick = torch.randperm(len(y), device=y.device)[: self.hparams.batch_size]
            x, y = x[pick], y[pick]
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        if self.hparams.lr_normalize_by_loss:
            self._normalized_step(optimizer, x, y, lr)
            return
        self.objective.loss(self.net(x), y).backward()
        optimizer.step()
        self.flow_time += lr

    def _normalized_step(
        self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float
    ) -> None:
        """A step of η on log L, i.e. of η/L on L (time advances by η/L, added in log space);
        or, before log L falls below ``lr_normalize_below_log_loss``, a plain step."""
        h = self.hparams
        log_loss = self.objective.log_loss(self.net(x), y)
        log_value = log_loss.item()
        plain = h.lr_normalize_below_log_loss is not None and (
            self.plain_phase and log_value >= h.lr_normalize_below_log_loss
        )
        self.plain_phase = plain
        if plain:
            lr = h.lr_plain or lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            self.objective.loss(self.net(x), y).backward()
            log_step = math.log(lr)
        else:
            log_loss.backward()
            log_step = math.log(lr) - log_value  # ln(η/L)
        optimizer.step()
        self._add_log_time(log_step)

    def _add_log_time(self, log_dt: float) -> None:
        """t += e^log_dt, summed in log space (t may pass float64's range: flow_time is inf)."""
        self.log_flow_time = float(np.logaddexp(self.log_flow_time, log_dt))
        self.flow_time = math.exp(self.log_flow_time) if self.log_flow_time < 709 else math.inf

    # ---- evaluation: shared by fit (at schedule points), validate and test ----

    @torch.no_grad()
    def evaluate(self, batch: Batch) -> dict[str, float]:
        """step, time, {train,test}/loss, {train,test}/acc (classification), param_norm; each
        split through its metrics (``grokkit.metrics``), in chunks of ``eval_batch_size``."""
        for x, _ in batch.values():
            self.net.check_input(x)
        values: dict[str, torch.Tensor] = {}
        for split, (x, y) in batch.items():
            values.update(self._evaluate_split(split, x, y))
        values["param_norm"] = torch.linalg.vector_norm(
            torch.cat([p.detach().flatten() for p in self.parameters()])
        )
        # one transfer (one device sync) for every value
        numbers = torch.stack([v.double() for v in values.values()]).tolist()
        value = dict(zip(values, numbers, strict=True))
        row: dict[str, float] = {"step": self.global_step, "time": self.flow_time}
        row.update((k, v) for k, v in value.items() if k.endswith("/loss"))
        row.update((k, v) for k, v in value.items() if k.endswith("/acc"))
        row["param_norm"] = value["param_norm"]
        if self.flow is not None:
            row["gradient_evaluations"] = self.gradient_evaluations
        if self.hparams.lr_normalize_by_loss:  # t and L past float64's range, as logarithms
            row["log10_time"] = self.log_flow_time / math.log(10)
            row["train/log_loss"] = value["train/log_loss"]
        return row

    def _evaluate_split(
        self, split: str, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The split's metrics, its whole set in one forward pass or in chunks of
        ``eval_batch_size`` samples (the metrics sum over chunks: the same values)."""
        metrics = self._eval_metrics.get((split, x.device))
        if metrics is None:  # made once, reused at every row
            # log L of the train split for loss-normalized runs (t and L as logarithms)
            log_loss = split == "train" and self.hparams.lr_normalize_by_loss
            metrics = SplitMetrics(split, self.objective, log_loss).to(x.device)
            self._eval_metrics[(split, x.device)] = metrics
        metrics.reset()
        size = self.hparams.eval_batch_size
        if size is None or size >= len(y):
            metrics.update(self.net(x), y)
        else:
            for start in range(0, len(y), size):
                metrics.update(self.net(x[start : start + size]), y[start : start + size])
        return metrics.compute()

    def record(self, batch: Batch) -> None:
        """Evaluate, let evaluation callbacks add columns, then send the row to every logger
        (the run directory's, W&B and any the user configured) and to
        ``trainer.callback_metrics`` (so EarlyStopping and ModelCheckpoint can monitor it)."""
        row = self.evaluate(batch)
        # time may overflow to inf by design (loss-normalized runs); log10_time starts at −inf
        self.diverged = not all(
            math.isfinite(v) for k, v in row.items() if k not in ("time", "log10_time")
        )
        for callback in self.trainer.callbacks:
            if isinstance(callback, EvaluationCallback):
                callback.on_evaluation(self.trainer, self, batch, row)
        for logger in self.loggers:
            logger.log_metrics(row, step=self.global_step)
        publish_row(self.trainer, row)
        self.last_row = row

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # During fit, Lightning validates once when the endless epoch stops; the evaluation
        # schedule has already recorded that point, so only `grokkit validate` logs here.
        if self.trainer.state.fn != TrainerFn.FITTING:
            self.log_dict(self._split_metrics(batch), batch_size=1)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.log_dict(self._split_metrics(batch), batch_size=1)

    def _split_metrics(self, batch: Batch) -> dict[str, float]:
        return {k: v for k, v in self.evaluate(batch).items() if "/" in k}

    # ---- checkpoint: the state Lightning does not keep by itself ----

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["grokkit"] = {
            "flow_time": self.flow_time,
            "log_flow_time": self.log_flow_time,
            "plain_phase": self.plain_phase,
            "gradient_evaluations": self.gradient_evaluations,
            "flow": None if self.flow is None else self.flow.state_dict(),
            "log_loss_now": self._log_loss_now,
            "last_row": self.last_row,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("grokkit", {})
        self.flow_time = state.get("flow_time", 0.0)
        self.log_flow_time = state.get("log_flow_time", -math.inf)
        self.plain_phase = state.get("plain_phase", True)
        self.gradient_evaluations = state.get("gradient_evaluations", 0)
        self._flow_state = state.get("flow")
        self._log_loss_now = state.get("log_loss_now")
        self.last_row = state.get("last_row")
        if state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def log_mean_exp(delta: float) -> float:
    """ln((e^δ − 1)/δ), the log of the mean of e^x over x ∈ [0, δ], without overflow."""
    if abs(delta) < 1e-8:
        return delta / 2
    if delta > 0:
        return delta + math.log(-math.expm1(-delta)) - math.log(delta)
    return math.log(-math.expm1(delta)) - math.log(-delta)
