"""The general path's flow on the exact EMD: majorise-minimise steps from exact transport plans.

At parameters ``theta`` a shape is sampled (nodes ``y_k`` ``(b, K, 2)`` with masses ``b_k``) and
the exact optimal plan ``P`` between the jet (particles ``x_i``, weights ``a_i``) and the nodes
is solved exactly (:func:`physkit.ot.emd_batch_plans`), with dual potentials ``v_k``; each
row's solve starts from the optimal basis of that row's previous solve (a warm start: see
:data:`WARM_START`). With the plan held fixed, the transport cost
``sum_ik P_ik (theta_ik / R)^beta`` is majorised, for ``beta <= 2``, by the quadratic

    sum_k W_k |y_k - t_k|^2 + const,   W_k = sum_i P_ik w_ik,   w_ik = beta/2 theta_ik^(beta-2) / R^beta,

with ``t_k`` the ``w``-weighted mean of the particles node ``k`` receives (``beta = 2``: their
mean; ``beta = 1``: one Weiszfeld step). Each iteration therefore

- moves the **positional** parameters (every kind but ``"weight"``: centres, radii, axes,
  angles) by one Gauss-Newton step on that quadratic -- its exact minimiser when the nodes are
  affine in them (centres and radii of points, rings and disks), so the step cannot raise the
  exact value for ``beta <= 2``; the Jacobian ``d y / d theta`` is the observable's analytic
  one where it has one (the built-in prongs: :mod:`shaper.prong_derivatives`), else autograd
  through the sampler, so any differentiable sampler works;
- moves the **weight** parameters (kind ``"weight"``: simplex weights, pileup fraction,
  mixture) by an Adam step on the exact EMD's gradient ``sum_k v_k d b_k / d theta`` (the dual
  potentials; nodes without mass are priced by their tightest feasible potential; ``d b / d
  theta`` analytic or by autograd, as the Jacobian);
- keeps a step only if the exact value did not rise; otherwise the next proposal goes back to
  the last kept point with a quarter of the weight step (once that is negligible, a quarter of
  the positional step); kept steps double their scale back up to 1. A row's value never rises
  for long and its steps shrink to nothing where no descent is left (the flow's stall rule
  then ends it at CONVERGED).

:class:`ExactSteps` is the ``loss_fn`` of :func:`physkit.flow.minimize` (optimizer ``"gd"``,
``lr=1``): it returns the exact EMD at the parameters, built so that its autograd gradient is
the step above (a value-exact surrogate), and keeps the per-row state the steps need. Rows are
independent: every row's numbers depend on that row only.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from physkit.angles import differences_in_range, wrap_angle
from physkit.flow import Simplex, is_final_evaluation
from physkit.ot import emd_batch_plans

from .observables import Observable

Params = Dict[str, torch.Tensor]

#: distances below this (units of y, phi) count as this in the majoriser's weights
_THETA_FLOOR = 1e-9
#: Adam constants of the weight steps
_B1, _B2, _ADAM_EPS = 0.9, 0.999, 1e-8
#: Gauss-Newton damping relative to the diagonal, and absolute floor relative to the trace
_DAMP, _FLOOR = 1e-9, 1e-12
#: a rejected step is retried at this fraction of its length; a kept one grows by _GROW
_SHRINK, _GROW = 0.25, 2.0
#: below this scale of a rejected row's weight step, its positional step shrinks instead
_MIN_WEIGHT_SCALE = 1e-3
#: default warm start of a row's exact solve: ``"last"`` (the basis of its previous solve),
#: ``"kept"`` (the basis at its last kept point) or ``"off"`` (cold least-cost starts)
WARM_START = "kept"
_WARM_CHOICES = ("last", "kept", "off")
#: with warm starts, problems of at most this many cells go to the transportation simplex
#: (``physkit.ot.emd_batch_plans(max_cells=)``; POT above): after a row's first solve its
#: solves start from its previous basis and need few pivots, at any size
WARM_MAX_CELLS = 40_000


def _bias(decay: float, t: torch.Tensor) -> torch.Tensor:
    """Adam's bias correction ``1 - decay^t`` for integer step counts ``t`` (float tensor),
    from a table of Python powers: ``torch.pow`` takes vectorised and scalar code paths for
    different positions of a batch, whose last bits differ, and a row's numbers must not
    depend on its position in the batch."""
    n = int(t.max().item()) + 1 if t.numel() else 1
    table = torch.tensor([1.0 - decay ** k for k in range(n)], dtype=t.dtype, device=t.device)
    return table[t.long()]


class Transport:
    """The exact plan between jets and sampled shapes, summarised per node.

    value ``(b,)``; y ``(b, K, 2)`` nodes; cost ``(b, M, K)``; W ``(b, K)`` majoriser weights;
    T ``(b, K, 2)`` targets; v ``(b, K)`` dual potentials of the nodes; basis
    ``(b, M + K - 1, 2)`` int64 numpy: the solves' final bases (warm starts for the next
    solve, given as ``basis``; None: cold). ``summaries=False``: W and T are not computed.
    """

    def __init__(self, x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, b: torch.Tensor,
                 R: float, beta: float, n_jobs: Optional[int],
                 basis: Optional[np.ndarray] = None, max_cells: Optional[int] = None,
                 summaries: bool = True):
        dy = x[:, :, None, 0] - y[:, None, :, 0]  # (b, M, K) particle - node
        dphi = x[:, :, None, 1] - y[:, None, :, 1]
        if not differences_in_range(x[..., 1], y[..., 1]):
            dphi = wrap_angle(dphi)
        # the arithmetic of the textbook expressions, with fewer (b, M, K) temporaries:
        # in-place steps where an operand is not needed afterwards
        sq = dy * dy
        sq += dphi * dphi
        if beta == 2.0:
            cost = sq.mul_(1.0 / (R * R))
        else:
            theta = sq.sqrt_()
            cost = theta * (1.0 / R)
            if beta != 1.0:
                cost = cost.pow_(beta)
        res = emd_batch_plans(cost, a, b, n_jobs=n_jobs, basis=basis, max_cells=max_cells)
        self.value, self.v, self.y, self.cost = res.value, res.v, y, cost
        self.basis = res.basis
        if not summaries:  # the value (and duals) only: W and T are left None
            self.W = self.T = None
            return
        pw = res.plan  # (b, M, K), owned: scaled in place into the majoriser's P_ik w_ik
        if beta == 1.0:
            pw.mul_(0.5 / R).div_(theta.clamp_min_(_THETA_FLOOR))
        elif beta == 2.0:
            pw.mul_(1.0 / (R * R))
        else:
            pw.mul_(theta.clamp_min_(_THETA_FLOOR).pow_(beta - 2.0)).mul_(0.5 * beta / R ** beta)
        self.W = pw.sum(1)
        shift = torch.stack([dy.mul_(pw).sum(1), dphi.mul_(pw).sum(1)], dim=-1)
        has = self.W > 0
        self.T = y + torch.where(has[..., None], shift / torch.where(has, self.W, 1.0)[..., None],
                                 torch.zeros_like(shift))


class ExactSteps:
    """``loss_fn(params, idx)`` for :func:`physkit.flow.minimize` (``optimizer="gd"``, ``lr=1``)
    that flows ``obs`` to the jets ``x (n, M, 2)``, ``a (n, M)`` by the steps of the module
    docstring, shapes sampled with ``n_samples`` nodes per shape. ``weight_lr``: Adam step of the
    weight parameters. ``n_jobs``: threads of the exact solves. ``warm_start``: ``"last"``,
    ``"kept"`` or ``"off"`` (default :data:`WARM_START`); the optimal values do not depend on
    it, the plans and duals of degenerate problems may."""

    def __init__(self, obs: Observable, x: torch.Tensor, a: torch.Tensor, *, n_samples: int,
                 R: float, beta: float, weight_lr: float, n_jobs: Optional[int] = 1,
                 warm_start: Optional[str] = None):
        warm_start = WARM_START if warm_start is None else warm_start
        if warm_start not in _WARM_CHOICES:
            raise ValueError(f"warm_start must be one of {_WARM_CHOICES}, got {warm_start!r}")
        self.warm_start = warm_start
        self.obs, self.x, self.a = obs, x, a
        self.K, self.R, self.beta, self.lr, self.n_jobs = n_samples, R, beta, weight_lr, n_jobs
        self.positional = [k for k, s in obs.specs.items() if s.kind != "weight"]
        # weight parameters (a one-element simplex is constant: no step)
        self.weights = [k for k, s in obs.specs.items() if s.kind == "weight"
                        and not (isinstance(s.constraint, Simplex) and s.shape[-1:] == (1,))]
        self.shared = {k: getattr(obs.specs[k].constraint, "shared_scale_dims", None)
                       for k in self.weights}
        n = x.shape[0]
        self.kept_value = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
        self.scale_w = torch.ones(n, dtype=torch.float64, device=x.device)
        self.scale_x = torch.ones(n, dtype=torch.float64, device=x.device)
        self.adam_t = torch.zeros(n, dtype=torch.float64, device=x.device)
        self.kept: Optional[Params] = None
        self.step: Optional[Params] = None
        self.m: Optional[Params] = None
        self.s: Optional[Params] = None
        self.seen: Optional[Params] = None
        self.seen_value = torch.full((n,), float("nan"), dtype=torch.float64, device=x.device)
        # per-row warm-start bases (n, M + K - 1, 2): each row's last ("last") or last kept
        # ("kept") solve's (padded (particle, node) pairs, -1: none), made at the first solve
        self.basis: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ loss_fn
    def __call__(self, params: Params, idx: torch.Tensor) -> torch.Tensor:
        if is_final_evaluation():
            return self._final_value(params, idx)
        p = {k: v.detach() for k, v in params.items()}
        if self.kept is None:
            self._init_state(p)
        tr = self._transport(p, idx)
        keep = tr.value <= self.kept_value[idx]
        self._store_basis(idx, tr, keep)
        step = self._new_step(p, idx, tr, keep)
        scale_w, scale_x = self._scales(idx, keep)
        self.kept_value[idx] = torch.where(keep, tr.value, self.kept_value[idx])
        direction = {}
        for k, v in p.items():
            km = keep.reshape((-1,) + (1,) * (v.dim() - 1))
            kept = torch.where(km, v, self.kept[k][idx])
            stp = torch.where(km, step[k], self.step[k][idx])
            self.kept[k][idx], self.step[k][idx] = kept, stp
            scale = scale_w if k in self.weights else scale_x
            target = kept - scale.reshape(km.shape).to(v.dtype) * stp
            direction[k] = v - target  # minimize's gd step (lr 1) lands on the target
        self._remember(p, idx, tr.value)
        value = tr.value.to(next(iter(params.values())).dtype)
        surrogate = sum(((params[k] - p[k]) * direction[k]).reshape(len(idx), -1).sum(1)
                        for k in p)
        return value + surrogate

    def _scales(self, idx: torch.Tensor, keep: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Step scales ``(b,)`` of the weight and positional parameters: on a rejected row the
        weight step shrinks first (it is the one that can raise the value), then, once it is
        negligible, the positional one; on a kept row both grow back towards 1."""
        w, x = self.scale_w[idx], self.scale_x[idx]
        weights_first = (w > _MIN_WEIGHT_SCALE) & bool(self.weights)
        w = torch.where(keep, (w * _GROW).clamp_max(1.0),
                        torch.where(weights_first, w * _SHRINK, w))
        x = torch.where(keep, (x * _GROW).clamp_max(1.0),
                        torch.where(weights_first, x, x * _SHRINK))
        self.scale_w[idx], self.scale_x[idx] = w, x
        return w, x

    # ------------------------------------------------------------------ pieces
    def _init_state(self, p: Params) -> None:
        n = self.x.shape[0]

        def full(v):
            return torch.zeros((n,) + v.shape[1:], dtype=v.dtype, device=v.device)

        self.kept = {k: full(v) for k, v in p.items()}
        self.step = {k: full(v) for k, v in p.items()}
        self.seen = {k: full(v) for k, v in p.items()}
        self.m = {k: full(p[k]).to(torch.float64) for k in self.weights}
        self.s = {k: full(p[k]).to(torch.float64) for k in self.weights}

    def _sample(self, p: Params, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        q = {k: v.to(torch.float64) for k, v in p.items()}
        y, b = self.obs.sample(q, self.K, self.R, batch=self.a.index_select(0, idx))
        return y, b.clamp_min(0)

    def _transport(self, p: Params, idx: torch.Tensor, summaries: bool = True) -> Transport:
        basis = None if self.basis is None else self.basis[idx.cpu().numpy()]
        with torch.no_grad():
            y, b = self._sample(p, idx)
            cells = None if self.warm_start == "off" else WARM_MAX_CELLS
            return Transport(self.x.index_select(0, idx), self.a.index_select(0, idx), y, b,
                             self.R, self.beta, self.n_jobs, basis, cells, summaries)

    def _store_basis(self, idx: torch.Tensor, tr: Transport, keep: torch.Tensor) -> None:
        """Keep the bases of the solve at rows ``idx`` (``keep (b,)``: the kept rows)."""
        if tr.basis is None or self.warm_start == "off":
            return
        rows, basis = idx.cpu().numpy(), tr.basis
        if self.warm_start == "kept":
            kept = keep.cpu().numpy()
            rows, basis = rows[kept], basis[kept]
        if self.basis is None or self.basis.shape[1:] != basis.shape[1:]:
            self.basis = np.full((self.x.shape[0],) + basis.shape[1:], -1, dtype=np.int64)
        self.basis[rows] = basis

    def _new_step(self, p: Params, idx: torch.Tensor, tr: Transport, keep: torch.Tensor
                  ) -> Params:
        """The step from ``p`` (rows ``idx``): Gauss-Newton on the positional parameters, Adam
        on the weights (Adam's state advances on the kept rows only)."""
        step = self._gauss_newton(p, idx, tr)
        step.update(self._adam(p, idx, tr, keep))
        return {k: step[k].to(p[k].dtype) if k in step else torch.zeros_like(p[k]) for k in p}

    def _gauss_newton(self, p: Params, idx: torch.Tensor, tr: Transport) -> Params:
        """Minimiser step of the quadratic majoriser over the positional parameters."""
        if not self.positional:
            return {}
        J = self._jacobian(p, idx, self.positional)  # (b, 2K, P)
        b = J.shape[0]
        Wf = tr.W.repeat_interleave(2, dim=1)  # (b, 2K): (node, coordinate) like y.reshape
        r = (tr.y - tr.T).reshape(b, -1)
        JW = J * Wf[..., None]
        H = J.transpose(1, 2) @ JW  # (b, P, P)
        g = (JW * r[..., None]).sum(1)  # (b, P)
        diag = torch.diagonal(H, dim1=1, dim2=2)
        floor = _FLOOR * diag.sum(1, keepdim=True) + 1e-300
        H = H + torch.diag_embed(_DAMP * diag + floor)
        delta = torch.linalg.solve(H, g[..., None])[..., 0]
        out, lo = {}, 0
        for k in self.positional:
            size = p[k][0].numel()
            out[k] = delta[:, lo:lo + size].reshape(p[k].shape)
            lo += size
        return out

    def _jacobian(self, p: Params, idx: torch.Tensor, names: List[str]) -> torch.Tensor:
        """``d y / d theta`` ``(b, 2K, P)`` over the parameters ``names``: the observable's
        analytic Jacobian when it has one, else :meth:`_autograd_jacobian`."""
        q = {k: v.to(torch.float64) for k, v in p.items()}
        J = self.obs.node_jacobian(q, self.K, self.R, names)
        if J is None:
            return self._autograd_jacobian(p, idx, names)
        # laid out as the autograd path's (P, b, 2K) permuted: the Gauss-Newton products'
        # summation order, hence their last bits, follow the memory layout
        return J.reshape(J.shape[0], -1, J.shape[-1]).permute(2, 0, 1).contiguous() \
            .permute(1, 2, 0)

    def _autograd_jacobian(self, p: Params, idx: torch.Tensor, names: List[str],
                           masses: bool = False) -> torch.Tensor:
        """``d y / d theta`` ``(b, 2K, P)`` (or, with ``masses``, ``d b / d theta`` ``(b, K, P)``)
        over the parameters ``names``: one sampler call on ``P * b`` rows (one unit tangent per
        coordinate), Jacobian-vector products by the double-vjp trick (reverse mode only:
        thread-safe, unlike torch's process-wide forward-AD levels)."""
        b = idx.shape[0]
        P = sum(p[k][0].numel() for k in names)
        q, tangents, lo = {}, [], 0
        for k, v in p.items():
            rep = v.detach().to(torch.float64).repeat((P,) + (1,) * (v.dim() - 1))
            if k in names:
                size = v[0].numel()
                tan = torch.zeros(P, b, size, dtype=rep.dtype, device=rep.device)
                ar = torch.arange(size, device=rep.device)
                tan[lo + ar, :, ar] = 1.0
                lo += size
                rep.requires_grad_(True)
                tangents.append((rep, tan.reshape(rep.shape)))
            q[k] = rep
        with torch.enable_grad():
            out = self.obs.sample(q, self.K, self.R,
                                  batch=self.a.index_select(0, idx).repeat(P, 1))[int(masses)]
            width = out[0].numel()
            zero = torch.zeros(b, width, P, dtype=torch.float64, device=out.device)
            if not out.requires_grad:
                return zero
            u = torch.zeros_like(out, requires_grad=True)
            vjp = torch.autograd.grad((out * u).sum(), [r for r, _ in tangents],
                                      create_graph=True, allow_unused=True)
            dot = sum((g * t).sum() for g, (_, t) in zip(vjp, tangents) if g is not None)
            if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
                return zero
            jv = torch.autograd.grad(dot, u)[0]  # (P * b, ...): J times each row's tangent
        return jv.detach().reshape(P, b, width).permute(1, 2, 0)

    def _adam(self, p: Params, idx: torch.Tensor, tr: Transport, keep: torch.Tensor) -> Params:
        """Adam step on the exact gradient of the weight parameters (rows ``idx``)."""
        if not self.weights:
            return {}
        q = {k: v.detach().to(torch.float64) for k, v in p.items()}
        grads = self._mass_grads(q, idx, tr.v)
        t = self.adam_t[idx] + keep.to(torch.float64)
        self.adam_t[idx] = t
        t = t.clamp_min(1.0)
        out = {}
        for k, g in zip(self.weights, grads):
            g = torch.zeros_like(q[k]) if g is None else g.detach()
            km = keep.reshape((-1,) + (1,) * (g.dim() - 1))
            m = _B1 * self.m[k][idx] + (1 - _B1) * g
            g2 = g * g
            if self.shared[k]:
                g2 = g2.mean(dim=self.shared[k], keepdim=True).expand_as(g2)
            s = _B2 * self.s[k][idx] + (1 - _B2) * g2
            m = torch.where(km, m, self.m[k][idx])
            s = torch.where(km, s, self.s[k][idx])
            self.m[k][idx], self.s[k][idx] = m, s
            tt = t.reshape(km.shape)
            mhat, shat = m / _bias(_B1, tt), s / _bias(_B2, tt)
            out[k] = self.lr * mhat / (shat.sqrt() + _ADAM_EPS)
        return out

    def _mass_grads(self, q: Params, idx: torch.Tensor, v: torch.Tensor) -> List:
        """``sum_k v_k d b_k / d theta`` for each weight parameter (None: no dependence): the
        observable's analytic form when it has one, else autograd through the sampler."""
        grads = self.obs.mass_grads(q, self.K, self.R, v, self.weights)
        if grads is not None:
            return list(grads)
        q = dict(q)
        for k in self.weights:
            q[k] = q[k].detach().requires_grad_(True)
        with torch.enable_grad():
            _, b = self.obs.sample(q, self.K, self.R, batch=self.a.index_select(0, idx))
            return list(torch.autograd.grad((b * v).sum(), [q[k] for k in self.weights],
                                            allow_unused=True))

    # ------------------------------------------------------------------ final values
    def _remember(self, p: Params, idx: torch.Tensor, value: torch.Tensor) -> None:
        for k, v in p.items():
            self.seen[k][idx] = v
        self.seen_value[idx] = value

    def _final_value(self, params: Params, idx: torch.Tensor) -> torch.Tensor:
        """Exact values at ``params`` (rows ``idx``), reusing the last evaluation of a row
        whose parameters did not change since."""
        p = {k: v.detach() for k, v in params.items()}
        dtype = next(iter(p.values())).dtype
        if self.seen is None:
            return self._transport(p, idx, summaries=False).value.to(dtype)
        same = torch.ones(len(idx), dtype=torch.bool, device=idx.device)
        for k, v in p.items():
            same &= (v == self.seen[k][idx]).reshape(len(idx), -1).all(1)
        value = self.seen_value[idx].clone()
        todo = torch.nonzero(~same).squeeze(1)
        if todo.numel():
            sub = {k: v.index_select(0, todo) for k, v in p.items()}
            value[todo] = self._transport(sub, idx.index_select(0, todo), summaries=False).value
        return value.to(dtype)


def flow_exact(obs: Observable, x: torch.Tensor, a: torch.Tensor, p0: Params, *, steps: int,
               n_samples: int, R: float, beta: float, weight_lr: float, tol: float,
               patience: int, n_jobs: Optional[int] = 1, koopman=None,
               warm_start: Optional[str] = None):
    """Flow ``obs`` from ``p0 (n, ...)`` to the jets ``x (n, M, 2)``, ``a (n, M)`` by
    :class:`ExactSteps` (at most ``steps`` exact solves per row besides the final ones;
    ``warm_start``: see :class:`ExactSteps`); returns :class:`physkit.flow.FlowResult`."""
    from physkit.flow import minimize

    loss = ExactSteps(obs, x.to(torch.float64), a.to(torch.float64), n_samples=n_samples, R=R,
                      beta=beta, weight_lr=weight_lr, n_jobs=n_jobs, warm_start=warm_start)
    kw = {} if koopman is None else {"koopman": koopman}
    return minimize(loss, p0, obs.constraints, steps=steps, optimizer="gd", lr=1.0, tol=tol,
                    patience=patience, device=x.device, **kw)


__all__: List[str] = ["Transport", "ExactSteps", "flow_exact"]
