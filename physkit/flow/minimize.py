"""Batched projected gradient flows: :func:`minimize` runs ``B`` independent problems as one tensor program.

Contract (used by SHAPER's fitter and FINDER's torch head)::

    minimize(loss_fn, params, constraints=None, *, steps=500, optimizer="adam", lr=1e-2,
             schedule=None, noise=None, tol=1e-6, patience=10, device=None, history=False,
             grad_history=False, mu_fn=None, mu_stride=None, generator=None,
             optimizer_options=None, koopman=None) -> FlowResult

- ``params``: ``dict[str, Tensor]``, each ``(B, ...)`` float32/float64 (one row per problem).
- ``constraints``: ``dict[str, Constraint]`` (missing name = :class:`Free`); the initial parameters are
  projected too.
- ``loss_fn(params, idx) -> (b,)``: ``params`` holds only the ``b`` rows still active, ``idx`` ``(b,)``
  int64 their row indices in the full batch (slice per-problem data / warm-start caches with it).
  Rows must be independent: the gradient is autograd of ``loss.sum()``. Tip: slice per-row data with
  ``data.index_select(0, idx)`` (on CPU much faster than ``data[idx]`` for large batches).

Calls ``loss_fn`` receives:

1. one call per flow step with the active rows (``torch.is_grad_enabled()``, leaf tensors that require
   grad; ``idx`` strictly increasing, a subset of the previous step's ``idx``);
2. after the flow, exactly two calls with **all** ``B`` rows (``idx = arange(B)``) under
   ``torch.no_grad()`` and with :func:`is_final_evaluation` returning ``True``: first at the final
   parameters, then at the best-so-far snapshot. A stochastic loss should switch to its deterministic
   mode when :func:`is_final_evaluation` is true. Per row, the candidate with the smaller finite loss is
   returned (ties go to the final parameters), with that loss.

Per-row convergence: with ``L_t`` the loss of a row at its ``t``-th evaluation, the evaluation counts
as stalled when ``|L_{t-1} - L_t| <= tol * max(|L_{t-1}|, |L_t|)`` (the relative change, up or down, is
at most ``tol``; two exact zeros count as stalled; scale-free, so small losses are not cut short and an
optimizer overshooting with rising loss is not mistaken for convergence). When ``patience``
consecutive evaluations stall, the row is CONVERGED: it keeps the parameters of that evaluation, takes
no further step, and is not passed to ``loss_fn`` again until the final evaluation. While annealing
noise is on (``T(t) > 0``) the stall counter stays at 0.

NONFINITE: a row whose loss or gradient is non-finite at an evaluation (detected from per-row sums, so
a gradient whose row sum overflows counts too), or whose step would make its parameters non-finite,
stops there: its parameters are not updated again (they are always finite -- a non-finite step is never
applied), and the final evaluation returns the better of them and its best-so-far snapshot (a
non-finite loss always loses; ``loss = +inf`` if neither is finite, so no NaN reaches the output).
Inputs with non-finite parameters raise ``ValueError``.

Koopman jumps (``koopman=Koopman(...)``, off by default; :mod:`physkit.flow.koopman`): after every
``window`` steps of a row (counted since its last jump, annealing noise off) the row's parameters
jump to a DMD prediction of its trajectory (then projected). The jump is not an optimizer step; the
next evaluation is made at the jumped parameters, and if their loss is above the last evaluation
before the jump the row goes back to the parameters it jumped from and takes no step at that
evaluation (which does not count towards convergence). ``FlowResult.n_jumps`` counts the jumps kept.

Host synchronisation: one per step (selecting the active rows, which also decides "all done?").
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Union

import torch

from physkit.flow.annealing import Annealing, lr_factor
from physkit.flow.constraints import Constraint, Free
from physkit.flow.koopman import Koopman, dmd_jump, flatten_params, unflatten_params
from physkit.flow.optimizers import Optimizer, make_optimizer
from physkit.status import Status

__all__ = ["Status", "FlowResult", "minimize", "is_final_evaluation"]

Params = Dict[str, torch.Tensor]
LossFn = Callable[[Params, torch.Tensor], torch.Tensor]


@dataclass
class FlowResult:
    """Result of :func:`minimize`.

    params: best parameters per row, ``(B, ...)`` each. loss: ``(B,)`` deterministic loss at ``params``.
    n_steps: ``(B,)`` int64 optimizer steps taken. status: ``(B,)`` int8 (:class:`Status`).
    n_jumps: ``(B,)`` int64 Koopman jumps kept (with ``koopman=``, else None).
    history: ``(T, B)`` loss at each step's evaluation (NaN when the row was not evaluated), if asked.
    grad_norm_history: ``(T, B)`` Euclidean norm of the full gradient of the row, if asked.
    mu_history: ``(T_mu, B)`` ``mu_fn`` values at steps ``mu_steps`` ``(T_mu,)`` (NaN for inactive rows).
    """

    params: Params
    loss: torch.Tensor
    n_steps: torch.Tensor
    status: torch.Tensor
    history: Optional[torch.Tensor] = None
    grad_norm_history: Optional[torch.Tensor] = None
    mu_history: Optional[torch.Tensor] = None
    mu_steps: Optional[torch.Tensor] = None
    n_jumps: Optional[torch.Tensor] = None

    @property
    def converged(self) -> torch.Tensor:
        """``(B,)`` bool: status == CONVERGED."""
        return self.status == int(Status.CONVERGED)


_FINAL = contextvars.ContextVar("physkit_flow_final_evaluation", default=False)


def is_final_evaluation() -> bool:
    """True while :func:`minimize` makes its final deterministic evaluation calls."""
    return _FINAL.get()


@contextlib.contextmanager
def _final_evaluation_mode():
    token = _FINAL.set(True)
    try:
        yield
    finally:
        _FINAL.reset(token)


def _rowmask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(b,)`` mask to broadcast against ``like`` ``(b, ...)``."""
    return mask.reshape(mask.shape + (1,) * (like.dim() - 1))


def _rows_finite(t: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1)


def _check_params(params: Mapping[str, torch.Tensor], device) -> tuple[Params, int, torch.device]:
    if not isinstance(params, Mapping) or len(params) == 0:
        raise ValueError("minimize: params must be a non-empty dict[str, Tensor] with a leading batch axis")
    first = next(iter(params.values()))
    if not isinstance(first, torch.Tensor):
        raise TypeError("minimize: parameters must be torch tensors")
    dev = torch.device(device) if device is not None else first.device
    B = None
    out = {}
    for k, v in params.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"minimize: parameter {k!r} is not a torch.Tensor")
        if not v.is_floating_point():
            raise TypeError(f"minimize: parameter {k!r} has dtype {v.dtype}; float32/float64 required")
        if v.dim() < 1:
            raise ValueError(f"minimize: parameter {k!r} needs a leading batch axis")
        if B is None:
            B = v.shape[0]
        elif v.shape[0] != B:
            raise ValueError(f"minimize: parameter {k!r} has batch size {v.shape[0]}, expected {B}")
        v = v.detach().to(dev).clone()
        bad = ~_rows_finite(v)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:10].tolist()
            raise ValueError(f"minimize: parameter {k!r} has non-finite values in rows {rows}")
        out[k] = v
    return out, B, dev


@dataclass
class _Flow:
    """The fixed settings of one :func:`minimize` call (validated)."""

    names: list
    cons: Dict[str, Constraint]
    lrs: Dict[str, float]
    opt: Optimizer
    shared: Dict[str, Optional[tuple]]
    steps: int
    schedule: Union[None, str, Callable[[int], float]]
    noise: Optional[Annealing]
    gen: Optional[torch.Generator]
    tol: float
    patience: int
    history: bool
    grad_history: bool
    mu_fn: Optional[LossFn]
    mu_stride: Optional[int]
    koopman: Optional[Koopman] = None


@dataclass
class _Jumps:
    """Koopman state over all ``B`` rows: ``buf`` ``(B, W, P)`` float64 last iterates (oldest
    first), ``count`` ``(B,)`` iterates recorded since the last jump, ``pending`` ``(B,)`` rows that
    jumped since their last evaluation, ``origin`` their parameters before the jump, ``before``
    ``(B,)`` the loss of their last evaluation before it, ``kept`` ``(B,)`` jumps kept."""

    buf: torch.Tensor
    count: torch.Tensor
    pending: torch.Tensor
    origin: Params
    before: torch.Tensor
    kept: torch.Tensor


@dataclass
class _FlowState:
    """What :func:`minimize` carries from step to step; tensors over all ``B`` rows.

    ``w``: parameters ``(B, ...)``; ``opt_state``: ``{slot: {name: (B, ...)}}``; ``best_w``,
    ``best_loss`` ``(B,)``: best-so-far snapshot; ``prev_loss`` ``(B,)``, ``stall`` ``(B,)`` int32:
    convergence counters (the losses are made at the first evaluation, in the loss dtype);
    ``n_steps`` ``(B,)`` int64; ``status`` ``(B,)`` int8; ``alive`` ``(B,)`` bool; ``rows``: active
    row indices; histories as lists of ``(B,)`` rows (``mu_steps`` ints)."""

    w: Params
    opt_state: Dict[str, Params]
    best_w: Params
    stall: torch.Tensor
    n_steps: torch.Tensor
    status: torch.Tensor
    alive: torch.Tensor
    rows: torch.Tensor
    best_loss: Optional[torch.Tensor] = None
    prev_loss: Optional[torch.Tensor] = None
    hist: list = field(default_factory=list)
    ghist: list = field(default_factory=list)
    muhist: list = field(default_factory=list)
    mu_steps: list = field(default_factory=list)
    jumps: Optional[_Jumps] = None

    @property
    def B(self) -> int:
        return self.stall.shape[0]

    @property
    def device(self) -> torch.device:
        return self.stall.device


@dataclass
class _Active:
    """The active rows ``rows`` ``(b,)`` of a step; ``full``: all rows (no gathers/scatters)."""

    rows: torch.Tensor
    full: bool

    def sel(self, x: torch.Tensor) -> torch.Tensor:
        """The active rows of a full-batch tensor (the tensor itself when ``full``)."""
        return x if self.full else x.index_select(0, self.rows)

    def put(self, x: torch.Tensor, v: torch.Tensor) -> None:
        """Write ``v`` ``(b, ...)`` into the active rows of ``x`` ``(B, ...)``."""
        if self.full:
            x.copy_(v)
        else:
            x.index_copy_(0, self.rows, v)


def _constraints(constraints: Optional[Mapping[str, Constraint]], names: list) -> Dict[str, Constraint]:
    """A constraint per parameter (:class:`Free` where none is given)."""
    constraints = dict(constraints or {})
    unknown = set(constraints) - set(names)
    if unknown:
        raise ValueError(f"minimize: constraints for unknown parameters {sorted(unknown)}")
    return {k: constraints.get(k) or Free() for k in names}


def _learning_rates(lr: Union[float, Mapping[str, float]], names: list) -> Dict[str, float]:
    """A learning rate per parameter from a scalar or a ``{name: lr}`` dict."""
    if isinstance(lr, Mapping):
        missing = set(names) - set(lr)
        if missing:
            raise ValueError(f"minimize: lr dict lacks parameters {sorted(missing)}")
        return {k: float(lr[k]) for k in names}
    return {k: float(lr) for k in names}


def _noise_generator(noise: Optional[Annealing], generator: Optional[torch.Generator],
                     dev: torch.device) -> Optional[torch.Generator]:
    """The caller's generator, or a new one (seeded by ``noise.seed``) when noise needs one."""
    gen = generator
    if noise is not None and gen is None:
        gen = torch.Generator(device=dev)
        if noise.seed is not None:
            gen.manual_seed(int(noise.seed))
        else:
            gen.seed()
    return gen


def _start(w: Params, opt: Optimizer, koopman: Optional[Koopman] = None) -> _FlowState:
    """State before the first step: all rows active, MAX_STEPS, snapshot = ``w``."""
    first = next(iter(w.values()))
    B, dev = first.shape[0], first.device
    jumps = None
    if koopman is not None:
        P = flatten_params(w).shape[1]
        jumps = _Jumps(buf=torch.zeros(B, koopman.window, P, dtype=torch.float64, device=dev),
                       count=torch.zeros(B, dtype=torch.int64, device=dev),
                       pending=torch.zeros(B, dtype=torch.bool, device=dev),
                       origin={k: v.clone() for k, v in w.items()},
                       before=torch.full((B,), math.inf, dtype=torch.float64, device=dev),
                       kept=torch.zeros(B, dtype=torch.int64, device=dev))
    return _FlowState(
        w=w, opt_state=opt.init_state(w), best_w={k: v.clone() for k, v in w.items()},
        stall=torch.zeros(B, dtype=torch.int32, device=dev),
        n_steps=torch.zeros(B, dtype=torch.int64, device=dev),
        status=torch.full((B,), int(Status.MAX_STEPS), dtype=torch.int8, device=dev),
        alive=torch.ones(B, dtype=torch.bool, device=dev), rows=torch.arange(B, device=dev),
        jumps=jumps)


def _evaluate(loss_fn: LossFn, flow: _Flow, st: _FlowState, act: _Active):
    """Loss ``(b,)`` and gradients at the active rows' parameters ``p`` (all detached);
    returns ``(p, loss, g)``. Makes the loss-dtype tensors of ``st`` at the first call."""
    b, names, w = act.rows.numel(), flow.names, st.w
    p = {k: (w[k].clone() if act.full else w[k].index_select(0, act.rows)).requires_grad_(True)
         for k in names}
    with torch.enable_grad():
        loss = loss_fn(p, act.rows)
        if not isinstance(loss, torch.Tensor) or loss.shape != (b,):
            shape = getattr(loss, "shape", type(loss))
            raise ValueError(f"minimize: loss_fn must return a ({b},) tensor for {b} active rows, got {shape}")
        if loss.requires_grad:
            grads = torch.autograd.grad(loss.sum(), [p[k] for k in names], allow_unused=True)
        else:
            grads = [None] * len(names)
    loss = loss.detach()
    p = {k: v.detach() for k, v in p.items()}
    g = {k: (gr if gr is not None else torch.zeros_like(p[k])) for k, gr in zip(names, grads)}
    if st.best_loss is None:
        st.best_loss = torch.full((st.B,), math.inf, dtype=loss.dtype, device=st.device)
        st.prev_loss = torch.full((st.B,), math.nan, dtype=loss.dtype, device=st.device)
    return p, loss, g


def _finite_rows(flow: _Flow, loss: torch.Tensor, g: Params) -> torch.Tensor:
    """``(b,)`` bool: finite loss and gradient (a NaN/inf anywhere in a row's gradient makes
    its row sum non-finite)."""
    gsum = loss
    for k in flow.names:
        gsum = gsum + g[k].reshape(loss.shape[0], -1).sum(dim=1).to(loss.dtype)
    return torch.isfinite(gsum)


def _update_best(flow: _Flow, st: _FlowState, act: _Active, p: Params, loss, finite) -> None:
    """Best-so-far snapshot (by the evaluations made during the flow)."""
    old_best = act.sel(st.best_loss)
    better = finite & (loss < old_best)
    act.put(st.best_loss, torch.where(better, loss, old_best))
    for k in flow.names:
        act.put(st.best_w[k], torch.where(_rowmask(better, p[k]), p[k], act.sel(st.best_w[k])))


def _update_convergence(flow: _Flow, st: _FlowState, act: _Active, loss, finite, T: float):
    """Stall counters; returns ``(converged, step)`` ``(b,)`` bool: rows that converge at
    this evaluation, rows that take a step."""
    prev = act.sel(st.prev_loss)
    stalled = (prev - loss).abs() <= flow.tol * torch.maximum(prev.abs(), loss.abs())  # False at a first evaluation
    if T > 0:
        stall = torch.zeros((act.rows.numel(),), dtype=st.stall.dtype, device=st.device)
    else:
        stall = torch.where(stalled & finite, act.sel(st.stall) + 1, 0)
    act.put(st.stall, stall)
    act.put(st.prev_loss, torch.where(finite, loss, prev))
    conv = finite & (stall >= flow.patience)
    return conv, finite & ~conv


def _step(flow: _Flow, st: _FlowState, act: _Active, t: int, T: float, p: Params, g: Params,
          finite, conv, stepmask, hold=None) -> None:
    """Optimizer step (+ Langevin noise) + projection of the rows in ``stepmask``; a step that
    would make a row non-finite is not applied. Updates statuses and the active mask. ``hold``
    ``(b,)``: rows that neither step nor leave (an undone Koopman jump)."""
    names, b, rows = flow.names, act.rows.numel(), act.rows
    f = lr_factor(flow.schedule, t, flow.steps)
    h = {k: flow.lrs[k] * f for k in names}
    sub_state = {s: {k: act.sel(st.opt_state[s][k]) for k in names} for s in st.opt_state}
    new, new_state = flow.opt.step(p, g, sub_state, h, t + 1, flow.shared)
    if T > 0:
        for k in names:
            xi = torch.randn(st.w[k].shape, generator=flow.gen, device=st.device, dtype=st.w[k].dtype)
            new[k] = new[k] + math.sqrt(2.0 * h[k] * T) * act.sel(xi)
    new = {k: flow.cons[k].project(new[k], rows) for k in names}
    nsum = None
    for k in names:
        r = new[k].reshape(b, -1).sum(dim=1)
        nsum = r if nsum is None else nsum + r.to(nsum.dtype)
    newfinite = torch.isfinite(nsum)
    apply = stepmask & newfinite
    bad = ~finite | (stepmask & ~newfinite)
    if hold is not None:
        apply, bad = apply & ~hold, bad & ~hold
    for k in names:
        am = _rowmask(apply, p[k])
        act.put(st.w[k], torch.where(am, new[k], p[k]))
        for s in st.opt_state:
            act.put(st.opt_state[s][k], torch.where(am, new_state[s][k], sub_state[s][k]))
    cur = act.sel(st.status)
    cur = torch.where(conv, int(Status.CONVERGED), cur)
    cur = torch.where(bad, int(Status.NONFINITE), cur)
    act.put(st.status, cur)
    act.put(st.alive, apply if hold is None else apply | hold)
    if act.full:
        st.n_steps += apply
    else:
        st.n_steps.index_add_(0, rows, apply.to(torch.int64))


def _record(flow: _Flow, st: _FlowState, act: _Active, t: int, p: Params, loss, g: Params) -> None:
    """Append this step's rows of the requested histories (NaN for inactive rows)."""
    B, b, rows, dev = st.B, act.rows.numel(), act.rows, st.device
    if flow.history:
        if act.full:
            st.hist.append(loss.clone())
        else:
            st.hist.append(torch.full((B,), math.nan, dtype=loss.dtype, device=dev).index_copy_(0, rows, loss))
    if flow.grad_history:
        gsq = sum(g[k].reshape(b, -1).to(loss.dtype).pow(2).sum(dim=1) for k in flow.names)
        grow = torch.full((B,), math.nan, dtype=loss.dtype, device=dev)
        st.ghist.append(grow.index_copy_(0, rows, gsq.sqrt()))
    if flow.mu_fn is not None and t % flow.mu_stride == 0:
        mu = flow.mu_fn(p, rows).detach()
        mrow = torch.full((B,), math.nan, dtype=mu.dtype, device=dev)
        st.muhist.append(mrow.index_copy_(0, rows, mu))
        st.mu_steps.append(t)


def _flow_step(loss_fn: LossFn, flow: _Flow, st: _FlowState, t: int) -> bool:
    """One step of the flow on the active rows; False when no row is active."""
    if t > 0:
        st.rows = st.rows[st.alive.index_select(0, st.rows)]  # the one host sync per step
    if st.rows.numel() == 0:
        return False
    act = _Active(st.rows, st.rows.numel() == st.B)
    p, loss, g = _evaluate(loss_fn, flow, st, act)
    finite = _finite_rows(flow, loss, g)
    _update_best(flow, st, act, p, loss, finite)
    T = flow.noise.temperature(t, flow.steps) if flow.noise is not None else 0.0
    if flow.koopman is None:
        conv, stepmask = _update_convergence(flow, st, act, loss, finite, T)
        _step(flow, st, act, t, T, p, g, finite, conv, stepmask)
    else:
        back = _jump_outcome(st, act, loss, finite)
        saved = (act.sel(st.stall), act.sel(st.prev_loss))
        conv, stepmask = _update_convergence(flow, st, act, loss, finite, T)
        conv, stepmask = conv & ~back, stepmask & ~back
        act.put(st.stall, torch.where(back, saved[0], act.sel(st.stall)))
        act.put(st.prev_loss, torch.where(back, saved[1], act.sel(st.prev_loss)))
        _step(flow, st, act, t, T, p, g, finite, conv, stepmask, hold=back)
        _jump(flow, st, act, T, loss, back)
    _record(flow, st, act, t, p, loss, g)
    return True


def _jump_outcome(st: _FlowState, act: _Active, loss, finite) -> torch.Tensor:
    """``(b,)`` bool: active rows whose Koopman jump raised the loss (to be undone); counts the
    jumps kept."""
    j = st.jumps
    pend = act.sel(j.pending)
    back = pend & ~(finite & (loss <= act.sel(j.before)))
    act.put(j.kept, act.sel(j.kept) + (pend & ~back).to(torch.int64))
    act.put(j.pending, torch.zeros_like(pend))
    return back


def _jump(flow: _Flow, st: _FlowState, act: _Active, T: float, loss, back) -> None:
    """Undo the jumps in ``back``; record the iterates of the rows that stepped; jump the rows
    with ``window`` iterates since their last jump (:func:`~physkit.flow.koopman.dmd_jump`)."""
    j, kp, rows = st.jumps, flow.koopman, act.rows
    for k in flow.names:
        act.put(st.w[k], torch.where(_rowmask(back, st.w[k][:1]), act.sel(j.origin[k]),
                                     act.sel(st.w[k])))
    stepped = act.sel(st.alive) & ~back
    buf = act.sel(j.buf)
    flat = flatten_params({k: act.sel(st.w[k]) for k in flow.names})
    buf = torch.where(stepped[:, None, None], torch.cat([buf[:, 1:], flat[:, None]], 1), buf)
    count = torch.where(back, 0, act.sel(j.count) + stepped.to(torch.int64))
    go = stepped & (count >= kp.window) & (T == 0)
    act.put(j.buf, buf)
    act.put(j.count, torch.where(go, 0, count))
    sel = torch.nonzero(go).squeeze(1)
    if sel.numel() == 0:
        return
    target, ok = dmd_jump(buf.index_select(0, sel).transpose(0, 1), kp.horizon,
                          kp.max_radius, kp.rtol)
    rows_go = rows.index_select(0, sel)
    cur = {k: st.w[k].index_select(0, rows_go) for k in flow.names}
    new = unflatten_params(target, cur)
    new = {k: flow.cons[k].project(new[k], rows_go) for k in flow.names}
    ok = ok & _rows_finite(flatten_params(new))
    for k in flow.names:
        m = _rowmask(ok, cur[k])
        j.origin[k].index_copy_(0, rows_go, cur[k])
        st.w[k].index_copy_(0, rows_go, torch.where(m, new[k], cur[k]))
    j.pending.index_copy_(0, rows_go, ok)
    j.before.index_copy_(0, rows_go, loss.index_select(0, sel).to(j.before.dtype))


def _final_evaluation(loss_fn: LossFn, st: _FlowState):
    """Deterministic evaluation of the final parameters and the best-so-far snapshot, all
    rows; per row the better one. Returns ``(params, loss (B,))`` (``+inf`` if neither is finite)."""
    B = st.B
    all_rows = torch.arange(B, device=st.device)
    with torch.no_grad(), _final_evaluation_mode():
        lf = loss_fn(st.w, all_rows).detach()
        lb = loss_fn(st.best_w, all_rows).detach()
    if lf.shape != (B,) or lb.shape != (B,):
        raise ValueError(f"minimize: loss_fn must return a ({B},) tensor in the final evaluation")
    use_best = torch.isfinite(lb) & (~torch.isfinite(lf) | (lb < lf))
    out = {k: torch.where(_rowmask(use_best, v), st.best_w[k], v) for k, v in st.w.items()}
    final_loss = torch.where(use_best, lb, lf)
    final_loss = torch.where(torch.isfinite(final_loss), final_loss, torch.full_like(final_loss, math.inf))
    return out, final_loss


def minimize(
    loss_fn: LossFn,
    params: Mapping[str, torch.Tensor],
    constraints: Optional[Mapping[str, Constraint]] = None,
    *,
    steps: int = 500,
    optimizer: Union[str, Optimizer] = "adam",
    lr: Union[float, Mapping[str, float]] = 1e-2,
    schedule: Union[None, str, Callable[[int], float]] = None,
    noise: Optional[Annealing] = None,
    tol: float = 1e-6,
    patience: int = 10,
    device=None,
    history: bool = False,
    grad_history: bool = False,
    mu_fn: Optional[LossFn] = None,
    mu_stride: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    optimizer_options: Optional[dict] = None,
    koopman: Optional[Koopman] = None,
) -> FlowResult:
    """Minimise ``B`` independent problems by a projected, optionally annealed, gradient flow.

    See the module docstring for the exact contract (calls to ``loss_fn``, convergence rule, statuses).
    ``params``: ``{name: (B, ...)}``; ``loss_fn(params (b, ...), idx (b,)) -> (b,)``.
    ``lr``: scalar or ``{name: lr}`` for every parameter. ``schedule``: ``None``, ``"cosine"``, ``"exp"``
    or a callable ``step -> factor`` (see :func:`physkit.flow.annealing.lr_factor`).
    ``noise``: :class:`Annealing` (Langevin noise ``sqrt(2 h T(t)) xi`` after each step, then projection).
    ``mu_fn(params, idx) -> (b,)`` is evaluated on the active rows every ``mu_stride`` steps (default 1)
    when given, e.g. :func:`physkit.flow.diagnostics.ntk_mu_fn`.
    ``koopman``: :class:`~physkit.flow.koopman.Koopman` DMD jump-ahead (None: off).
    """
    w, B, dev = _check_params(params, device)
    names = list(w)
    cons = _constraints(constraints, names)
    w = {k: cons[k].project(w[k]) for k in names}
    lrs = _learning_rates(lr, names)
    if steps < 0 or patience < 1:
        raise ValueError("minimize: steps must be >= 0 and patience >= 1")
    lr_factor(schedule, 0, steps)  # validates the schedule name early
    opt = make_optimizer(optimizer, **(optimizer_options or {}))
    if mu_fn is not None and mu_stride is None:
        mu_stride = 1
    if koopman is not None and not isinstance(koopman, Koopman):
        raise TypeError(f"minimize: koopman must be a physkit.flow.Koopman or None, got "
                        f"{type(koopman).__name__}")
    flow = _Flow(names=names, cons=cons, lrs=lrs, opt=opt,
                 shared={k: getattr(cons[k], "shared_scale_dims", None) for k in names},
                 steps=steps, schedule=schedule, noise=noise,
                 gen=_noise_generator(noise, generator, dev), tol=tol, patience=patience,
                 history=history, grad_history=grad_history, mu_fn=mu_fn, mu_stride=mu_stride,
                 koopman=koopman)
    st = _start(w, opt, koopman)
    for t in range(steps):
        if not _flow_step(loss_fn, flow, st, t):
            break
    out, final_loss = _final_evaluation(loss_fn, st)

    def stack(xs):
        return torch.stack(xs) if xs else torch.empty((0, B), device=dev)

    return FlowResult(
        params=out,
        loss=final_loss,
        n_steps=st.n_steps,
        status=st.status,
        history=stack(st.hist) if history else None,
        grad_norm_history=stack(st.ghist) if grad_history else None,
        mu_history=stack(st.muhist) if mu_fn is not None else None,
        mu_steps=torch.tensor(st.mu_steps, dtype=torch.int64, device=dev) if mu_fn is not None else None,
        n_jumps=st.jumps.kept if st.jumps is not None else None,
    )
