"""The shared gradient steps of a vectorized ensemble (``grokkit.ensemble`` runs the members):
a gd member's chunk of steps, or an adaptive member's gradient evaluation, goes to the process's
``Batcher``, which runs every member with the same data, net structure and loss (and, for gd, the
same chunk) as one stacked computation. See ``grokkit.ensemble`` for the whole design; this
module is the part the task sees (``current_batcher``), below the run machinery.
"""

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch.func import functional_call, grad, vmap

_local = threading.local()  # .batcher, .solo, .building (the member thread's own state)


def join(batcher: "Batcher") -> None:
    """Make the calling thread a member of ``batcher``'s ensemble."""
    _local.batcher = batcher


def current_batcher() -> "Batcher | None":
    """The batcher the calling thread's run hands its gradient steps to (None: a run alone)."""
    return getattr(_local, "batcher", None)


def batchable(task: Any) -> str | None:
    """Why ``task`` cannot take its steps in a batch (None: it can): full-batch plain gd steps
    (sgd, no optimizer state) or the adaptive integrator's gradient evaluations, not
    loss-normalized."""
    h = task.hparams
    if h.integrator not in ("gd", "adaptive"):
        return f"integrator {h.integrator}"
    if h.integrator == "gd" and h.optimizer != "sgd":
        return f"optimizer {h.optimizer}"
    if h.batch_size is not None:
        return "minibatch steps"
    if h.lr_normalize_by_loss:
        return "loss-normalized steps"
    return None


def _group_key(task: Any, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """What members must share to be one stacked computation: data tensors, net, loss."""
    net = task.net
    shapes = tuple((n, tuple(p.shape), p.dtype) for n, p in net.named_parameters())
    return (id(x), id(y), type(net), shapes, task.hparams.loss, getattr(net, "degree", None))


@dataclass
class _Chunk:
    """One member's chunk: steps [start, stop) on the train split (x, y)."""

    task: Any
    x: torch.Tensor
    y: torch.Tensor
    start: int
    stop: int
    steps: int = 0  # taken (set by the batch)
    error: BaseException | None = None
    done: bool = False
    lrs: list[float] = field(default_factory=list)  # η at each step the member will take

    def plan(self) -> None:
        """The member's steps in this chunk as its run alone takes them: up to ``stop``, or the
        first step where its flow time has reached ``max_flow_time``."""
        task, horizon = self.task, self.task.hparams.max_flow_time
        t, step = task.flow_time, self.start
        while step < self.stop and not (horizon is not None and t >= horizon):
            lr = task.lr_at(step)
            self.lrs.append(lr)
            t += lr
            step += 1

    def key(self) -> tuple:
        """Members with the same key step together."""
        return ("chunk", self.start, *_group_key(self.task, self.x, self.y))


@dataclass
class _Gradient:
    """One member's gradient evaluation (the adaptive integrator's): ∇L of its net at its current
    parameters on the train split (x, y)."""

    task: Any
    x: torch.Tensor
    y: torch.Tensor
    grads: tuple[torch.Tensor, ...] = ()  # (set by the batch)
    error: BaseException | None = None
    done: bool = False

    def key(self) -> tuple:
        return ("gradient", *_group_key(self.task, self.x, self.y))


class Batcher:
    """Collects the chunks of ``members`` live member threads and runs them stacked.

    Every member hands in its request and waits; one thread, the one in ``serve``, runs each
    round once every live member has handed one in (or left). A member thread must call
    ``leave`` when its run ends, however it ends (``run_members`` does), or the round would wait
    for it forever.

    Why one serving thread, the main one: under torch's OpenMP, a parallel operation started
    from any thread but the process's main one cost several times more here (a multiply-add on
    16x97x97 floats: 80 us against 14, 2 cores; the same 21 us on one thread), and member
    threads that ran parallel operations of their own slowed the main thread's too. So the
    main thread runs every round on the process's threads and members run their own work on
    one thread each (``run_members``): E5's stacked step went from 1.9 to 1.1 ms.
    """

    def __init__(self, members: int) -> None:
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # a member's request is done
        self._ready = threading.Condition(lock)  # a round is complete (for the serving thread)
        self._live = members  # member threads that have not left
        self._pending: list[_Chunk | _Gradient] = []
        self._build = threading.Lock()  # one member builds at a time (global RNG)
        self.tasks: list[Any] = []  # every member task seen (for stop requests)
        self.stopping = False
        self.batches = 0  # stacked groups run: gd chunks and gradient rounds (tests, benchmarks)

    # --- member threads ------------------------------------------------------------------------
    def start_building(self) -> None:
        """Called by a member thread before it builds its run (released at its first hand-in or
        when it leaves)."""
        self._build.acquire()
        _local.building = True

    def _done_building(self) -> None:
        if getattr(_local, "building", False):
            _local.building = False
            self._build.release()

    def leave(self) -> None:
        """The calling member thread takes no further part (its run ended, or it steps alone)."""
        self._done_building()
        with self._cond:
            self._live -= 1
            self._ready.notify()

    def run_chunk(self, task: Any, x: torch.Tensor, y: torch.Tensor, start: int, stop: int) -> int:
        """Take ``task``'s gd steps [start, stop) with the other members'; returns the step it
        reached (``stop``, or earlier at its flow-time horizon or a stop request). A member that
        cannot be batched leaves and gets ``start`` back: it takes its steps itself."""
        if self._solo(task):
            return start
        request = _Chunk(task, x, y, start, stop)
        self._hand_in(task, request)
        return start + request.steps

    def gradient(
        self, task: Any, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, ...] | None:
        """∇L of ``task``'s net at its current parameters on (x, y), evaluated stacked with the
        other members' requests: each evaluation of an adaptive member's integrator (whose step
        sizes, stages, times and rejections stay its own). None for a member that cannot be
        batched: it leaves and evaluates its gradients itself."""
        if self._solo(task):
            return None
        request = _Gradient(task, x, y)
        self._hand_in(task, request)
        return request.grads

    def _solo(self, task: Any) -> bool:
        """Whether the calling member steps alone (deciding it, and leaving, at its first call)."""
        if getattr(_local, "solo", False):
            return True
        if batchable(task) is not None:
            _local.solo = True
            self.leave()
            return True
        return False

    def _hand_in(self, task: Any, request: "_Chunk | _Gradient") -> None:
        """Add ``request`` to the round; run the round if it is now complete; wait until done."""
        with self._cond:
            if task not in self.tasks:
                self.tasks.append(task)
            if self.stopping:
                task.stop_requested = True
            self._pending.append(request)
            self._ready.notify()
        self._done_building()
        with self._cond:
            self._cond.wait_for(lambda: request.done)
        if request.error is not None:
            raise request.error

    def request_stop(self) -> None:
        """A stop signal: every member stops after its current step (as a run alone)."""
        self.stopping = True
        for task in list(self.tasks):
            task.stop_requested = True

    # --- the batch -----------------------------------------------------------------------------
    def serve(self, threads: int, poll: float = 0.2) -> None:
        """Run every complete round on the calling thread, with ``threads`` threads per
        operation, until all members have left. Wakes at least every ``poll`` seconds (the main
        thread's signal handlers run then)."""
        pin_threads(threads)
        while True:
            with self._cond:
                self._ready.wait_for(self._complete, timeout=poll)
                if not self._complete():
                    if self._live == 0:
                        return
                    continue
                batch, self._pending = self._pending, []
            self._run(batch)

    def _complete(self) -> bool:
        """(Under the lock.) Whether every live member has handed in a request."""
        return bool(self._pending) and len(self._pending) >= self._live

    def _run(self, batch: list[_Chunk | _Gradient]) -> None:
        """Run the batch's groups one after the other; every member is woken, however it went
        (an error reaches each member of its group, in the member's own thread)."""
        try:
            groups: dict[tuple, list[Any]] = {}
            for request in batch:
                groups.setdefault(request.key(), []).append(request)
            for group in groups.values():
                try:
                    (run_group if isinstance(group[0], _Chunk) else run_gradients)(group)
                except BaseException as exc:  # noqa: BLE001 — handed to each member's thread
                    for request in group:
                        request.error = exc
                self.batches += 1
        except BaseException as exc:  # noqa: BLE001
            for request in batch:
                request.error = request.error or exc
        finally:
            with self._cond:
                for request in batch:
                    request.done = True
                self._cond.notify_all()


def pin_threads(n: int) -> None:
    """Give the calling thread ``n`` threads per operation, for good. torch's count is global
    and each thread copies it lazily, at its first parallel operation: a thread that only set
    its own count would take whatever count another thread set last. Reading it first makes
    the copy now, then the setting sticks to this thread."""
    torch.get_num_threads()
    torch.set_num_threads(n)


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-member scalars as one tensor on ``like``'s device."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _views(column: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``column`` viewed to broadcast over each stacked parameter (views: writing the column
    updates every one)."""
    return {n: column.view(-1, *([1] * (p.dim() - 1))) for n, p in params.items()}


@dataclass(frozen=True)
class Stacking:
    """How K members' stacked parameters are stepped together: ``encode`` maps them (the
    net's own parameters, stacked) to the coordinates the steps run in, ``direction`` gives the
    gd direction there (the stacked ∇L for most nets), ``decode`` maps back. Both maps are
    linear, so ``decode(direction(encode(θ)))`` is ∇L at θ, and gd with per-member coupled
    weight decay θ ← θ − η(∇L + λθ) is the same update in either coordinates."""

    encode: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    direction: Callable[..., dict[str, torch.Tensor]]
    decode: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]

    def gradient(
        self, params: dict[str, torch.Tensor], buffers: dict, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """∇L of each member at the stacked ``params`` (the net's own coordinates)."""
        return self.decode(self.direction(self.encode(params), buffers, x, y))


def _same(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return params


def stacking(
    net: torch.nn.Module, loss_name: str, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> Stacking:
    """vmap(grad) of ``net`` run functionally, in its own coordinates; for the matrix
    factorization under MSE (E5) a hand-written step in batched matrix products."""
    from grokkit.models import MatrixFactorization

    if type(net) is MatrixFactorization and loss_name == "mse":
        return Stacking(_sum_difference, matrix_factorization_mse_direction, _halves)

    def member_loss(params: dict[str, torch.Tensor], buffers: dict, x: Any, y: Any) -> Any:
        return loss(functional_call(net, (params, buffers), (x,)), y)

    return Stacking(_same, vmap(grad(member_loss), in_dims=(0, 0, None, None)), _same)


def _sum_difference(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"a": params["u"] + params["v"], "b": params["u"] - params["v"]}


def _halves(stacked: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    a, b = stacked["a"], stacked["b"]
    return {"u": (a + b).mul_(0.5), "v": (a - b).mul_(0.5)}


def matrix_factorization_mse_direction(
    params: dict[str, torch.Tensor], buffers: dict, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The gd direction of L = mean_s (W_{i_s j_s} − y_s)² for K stacked members in the
    coordinates A = U + V, B = U − V, where W = UUᵀ − VVᵀ = (ABᵀ + BAᵀ)/2. With R the d×d
    matrix of the residuals 2(W_ij − y)/n at the observed (i, j) (0 elsewhere) and G = R + Rᵀ,
    ∇_U L = GU and ∇_V L = −GV, so gd on (U, V) moves A along GB and B along GA. Three d×d
    matrix products per member, against four in (U, V) and against vmap of the net's gathers
    (4·n·d elements moved, scatter-added back), several times slower for E5's d = 97,
    n = 470. W needs no difference of two products of size α² here (B starts at 0), so it keeps
    more digits than UUᵀ − VVᵀ in float32."""
    a, b = params["a"], params["b"]
    k, d = a.shape[0], a.shape[1]
    i, j = x[:, 0], x[:, 1]
    p = (a @ b.mT).view(k, d * d)
    w = (p.index_select(1, i * d + j) + p.index_select(1, j * d + i)).mul_(0.5)
    residual = (w - y).mul_(2.0 / len(y))
    r = torch.zeros_like(p).index_copy_(1, i * d + j, residual).view(k, d, d)
    g = r + r.mT
    return {"a": g @ b, "b": g @ a}


def _stacked(tasks: list[Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The members' parameters and buffers, stacked along a new leading axis (copies)."""
    nets = [t.net for t in tasks]
    with torch.no_grad():
        params = {
            n: torch.stack([dict(net.named_parameters())[n].detach() for net in nets])
            for n, _ in nets[0].named_parameters()
        }
        buffers = {
            n: torch.stack([dict(net.named_buffers())[n] for net in nets])
            for n, _ in nets[0].named_buffers()
        }
    return params, buffers


def run_gradients(group: list[_Gradient]) -> None:
    """Every member's ∇L at its net's current parameters, as one stacked computation."""
    first = group[0]
    task = first.task
    params, buffers = _stacked([r.task for r in group])
    grads = stacking(task.net, task.hparams.loss, task.objective.loss).gradient(
        params, buffers, first.x, first.y
    )
    for i, request in enumerate(group):
        request.grads = tuple(g[i] for g in grads.values())


def run_group(group: list[_Chunk]) -> None:
    """Take every member's planned steps of the chunk as one stacked computation: each step
    θ ← θ − η_k(∇L + λ_k θ) (torch SGD's coupled weight decay, per member k)."""
    for request in group:
        request.plan()
    first = group[0]
    x, y = first.x, first.y
    net = first.task.net
    coordinates = stacking(net, first.task.hparams.loss, first.task.objective.loss)
    step = 0
    active = [r for r in group if r.lrs]
    while active:
        tasks = [r.task for r in active]
        params, buffers = _stacked(tasks)
        params = coordinates.encode(params)
        like = next(iter(params.values()))
        decay = _views(_column([t.hparams.weight_decay for t in tasks], like), params)
        end = min(len(r.lrs) for r in active)  # the next step where a member stops
        constant = all(len(set(r.lrs[step:end])) == 1 for r in active)
        # each step's rates, (steps, K), in the parameters' dtype; the column the step reads
        # is updated in place
        schedule = torch.tensor([r.lrs[step:end] for r in active], dtype=like.dtype).T.neg()
        rate = schedule[0].to(like.device, copy=True)
        rates = _views(rate, params)

        one_step = partial(_step, coordinates.direction, params, buffers, x, y, decay, rates)
        take = _graphed(one_step, end - step) if x.is_cuda else one_step
        first_step, checked = step, -math.inf
        with torch.no_grad():
            while step < end:
                if time.monotonic() - checked > _CHECK_EVERY:  # a stop or max_time, mid-chunk
                    if any(_stopping(t) for t in tasks):
                        break
                    checked = time.monotonic()
                if not constant:
                    rate.copy_(schedule[step - first_step])
                take()
                step += 1
            members = _unstack(coordinates.decode(params), len(active))
            for r, values in zip(active, members, strict=True):
                _write_back(r, values, step)
        stopped = [r for r in active if _stopping(r.task)]
        active = [r for r in active if len(r.lrs) > step and r not in stopped]


def _stopping(task: Any) -> bool:
    """A stop request or trainer.max_time spent: the member stops where its run alone would."""
    return task.stop_requested or task.time_budget_spent()


_CHECK_EVERY = 0.05  # seconds between a chunk's checks for a stop (16 tasks' timers per step
# cost more than E5's stacked step)


def _step(
    direction: Callable[..., dict[str, torch.Tensor]],
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    decay: dict[str, torch.Tensor],
    rates: dict[str, torch.Tensor],
) -> None:
    """One stacked step, in place (in the stacking's coordinates)."""
    grads = direction(params, buffers, x, y)
    for n, p in params.items():
        d_p = grads[n].addcmul_(p, decay[n])  # ∇L + λθ
        p.addcmul_(d_p, rates[n])  # θ − η(∇L + λθ)


CUDA_GRAPHS = True  # replay a captured step on a GPU (benchmarks/ensemble.py --gpu turns it off)
_GRAPH_MIN_STEPS = 16  # shorter segments run eagerly: a capture costs about a step's launches


def _graphed(one_step: Callable[[], None], steps: int) -> Callable[[], None]:
    """``one_step`` as a CUDA graph replay: one launch per step instead of one per kernel (the
    stacked step of a small net is a few dozen kernels of microseconds each). The first call
    takes its step eagerly on a side stream (the warm-up a capture needs: lazy initialization,
    cuBLAS workspaces), then captures; every later call replays. The replay runs the same
    kernels on the same tensors, so its steps equal the eager ones. Falls back to eager steps
    if the capture fails."""
    if not CUDA_GRAPHS or steps < _GRAPH_MIN_STEPS:
        return one_step
    replay: list[Callable[[], None]] = []  # the graph's replay (one_step if capture failed)

    def take() -> None:
        if replay:
            replay[0]()
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            one_step()  # a real step, and the warm-up
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                one_step()  # recorded, not run
            replay.append(graph.replay)
        except RuntimeError:
            replay.append(one_step)

    return take


def _unstack(params: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
    return [{n: p[i] for n, p in params.items()} for i in range(k)]


def _write_back(request: _Chunk, values: dict[str, torch.Tensor], step: int) -> None:
    """The member's parameters, steps, flow time and last step size, as its run alone leaves
    them (t summed step by step in the same order: the same float)."""
    task = request.task
    with torch.no_grad():
        for name, p in task.net.named_parameters():
            p.copy_(values[name])
    taken = step - request.steps
    for lr in request.lrs[request.steps : step]:
        task.flow_time += lr
    if taken:
        optimizer = task.optimizers().optimizer
        for group in optimizer.param_groups:
            group["lr"] = request.lrs[step - 1]
    request.steps = step


def in_ensemble() -> bool:
    return current_batcher() is not None
