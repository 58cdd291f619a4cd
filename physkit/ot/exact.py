"""Exact Energy Mover's Distance with POT's network simplex.

Convention (energyflow's)::

    EMD_{beta,R}(P, Q) = min_{f_ij >= 0} sum_ij f_ij (theta_ij / R)^beta  [+ |sum E - sum E'|]

``theta_ij`` is the Euclidean distance in ``(y, phi)``. :func:`emd` and :func:`emds` take
energyflow's parameter names **and defaults** (``energyflow.emd.emd`` / ``emds``), so the
same call gives the same number in both:

- ``norm=False`` (default): the excess energy of the heavier event is moved to a fake
  particle at distance ``R`` (cost 1 whatever ``beta``), which adds ``|sum E - sum E'|``;
  ``norm=True`` normalises both events to unit total weight first;
- ``periodic_phi=False`` (default): azimuthal differences are taken as they are;
  ``periodic_phi=True`` wraps them into ``(-pi, pi]`` (needed for whole events, and for
  jets straddling phi = +-pi).

SHAPER's internal :func:`emd_batch` / :func:`emd_batch_grads` are always normalised and
periodic (a jet's shape is a probability distribution on the cylinder).

Events are ``(M, 3+)`` arrays of ``(weight or pT, y, phi, ...)`` (energyflow's layout; the
columns after the third are ignored, where energyflow would take them as further
coordinates unless ``gdim=2``), one-jet :class:`physkit.events.Events`, or (for
:func:`emds`) anything :meth:`physkit.events.Events.as_jets` reads, awkward / vector
records included. Zero-weight rows are ignored.

Solver: problems of at most :data:`SMALL_PROBLEM_CELLS` cells (``n * m`` after dropping
zero weights) go to :mod:`physkit.ot.transport_simplex` (a compiled primal transportation
simplex, faster than POT there: bench/RESULTS.md, "Exact solver for small problems"),
larger ones to POT's network simplex. Both release the GIL (measured for POT: two threads
run two problems in ~0.55x the serial wall time on 2 cores), so :func:`emds` and
:func:`emd_batch` parallelise with threads. The optimal value is unique; where the optimal
plan or duals are not (degenerate problems) the two solvers may return different ones.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional

import numpy as np
import ot
import torch

from ..angles import wrap_angle
from ..cores import n_workers
from ..events import Events
from . import transport_simplex as _ts
from .cost import _check_params, cost_matrix

#: default cap on network-simplex iterations (POT's default, 1e5, is too small for big jets)
DEFAULT_N_ITER_MAX = 10_000_000
#: problems with at most this many cells (``n * m``, zero weights dropped) are solved by
#: :mod:`physkit.ot.transport_simplex`, larger ones by POT (0: POT for every problem)
SMALL_PROBLEM_CELLS = 10_000

_OPTIMAL = 1
_RESULT_MESSAGES = {0: "problem infeasible (weights are not balanced)",
                    2: "problem unbounded",
                    3: "iteration limit n_iter_max reached before optimality"}


class EMDError(RuntimeError):
    """POT's network simplex did not reach an optimal solution."""


# ------------------------------------------------------------------ solver
def _solve_pot(a: np.ndarray, b: np.ndarray, C: np.ndarray, n_iter_max: int,
               flow: bool = False):
    """Public POT path: ``ot.emd`` with ``log=True`` for the result code."""
    G, log = ot.emd(a, b, C, numItermax=n_iter_max, log=True)
    return float(log["cost"]), int(log["result_code"]), (G if flow else None)


def _solve_fast(a: np.ndarray, b: np.ndarray, C: np.ndarray, n_iter_max: int,
                flow: bool = False):
    """POT's compiled network simplex without the Python wrapper (2-3x faster on small
    problems). ``a``, ``b`` positive float64, equal sums; ``C`` C-contiguous float64."""
    G, cost, _u, _v, code = _emd_c(a, b, C, n_iter_max, 1, None, None)
    return float(cost), int(code), (G if flow else None)


def _solve_duals(a: np.ndarray, b: np.ndarray, C: np.ndarray, n_iter_max: int):
    """``(cost, code, plan, u)``: the optimal plan and the first side's dual potential
    (``u_i + v_j <= C_ij``, equality on the plan's support)."""
    if _solve is _solve_fast:
        G, cost, u, _v, code = _emd_c(a, b, C, n_iter_max, 1, None, None)
        return float(cost), int(code), G, np.asarray(u)
    G, log = ot.emd(a, b, C, numItermax=n_iter_max, log=True)  # pragma: no cover
    return float(log["cost"]), int(log["result_code"]), G, np.asarray(log["u"])


def _solve_with_duals(a: np.ndarray, b: np.ndarray, C: np.ndarray, n_iter_max: int):
    """``(plan, cost, u, v, code)`` of one balanced problem (zero weights allowed: POT drops
    them; their potentials are meaningless)."""
    if _solve is _solve_fast:
        G, cost, u, v, code = _emd_c(a, b, C, n_iter_max, 1, None, None)
        return G, float(cost), np.asarray(u), np.asarray(v), int(code)
    G, log = ot.emd(a, b, C, numItermax=n_iter_max, log=True)  # pragma: no cover
    return (G, float(log["cost"]), np.asarray(log["u"]), np.asarray(log["v"]),  # pragma: no cover
            int(log["result_code"]))


try:  # POT >= 0.9.6 signature: emd_c(a, b, M, max_iter, numThreads, alpha_init, beta_init)
    from ot.lp.emd_wrap import emd_c as _emd_c

    _a = np.array([0.5, 0.5])
    _b = np.array([1.0])
    _c = np.array([[1.0], [3.0]])
    if abs(_solve_fast(_a, _b, _c, 100)[0] - 2.0) > 1e-12:  # pragma: no cover
        raise ValueError("unexpected emd_c result")
    _solve = _solve_fast
except Exception:  # pragma: no cover - other POT versions: the public API
    _solve = _solve_pot


def _network_simplex(a: np.ndarray, b: np.ndarray, C: np.ndarray, n_iter_max: int,
                     flow: bool = False, what: str = "EMD", duals: bool = False):
    """Solve one balanced problem; raise :class:`EMDError` unless the solver reports optimality.
    Returns ``(cost, plan or None)``, or ``(cost, plan, u)`` with ``duals`` (``u`` the first
    side's dual potential)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    b = b * (a.sum() / b.sum())  # exact balance, as POT's wrapper does
    C = np.ascontiguousarray(C, dtype=np.float64)
    solver = "POT network simplex"
    if len(a) * len(b) <= SMALL_PROBLEM_CELLS:
        res = _small_solve(a[None], b[None], C[None], n_iter_max, 0, 1)
        cost, code, G, u = float(res.cost[0]), int(res.status[0]), res.plan[0], res.u[0]
        solver = "transportation simplex"
    elif duals:
        cost, code, G, u = _solve_duals(a, b, C, int(n_iter_max))
    else:
        cost, code, G = _solve(a, b, C, int(n_iter_max), flow)
    if code != _OPTIMAL:
        msg = _RESULT_MESSAGES.get(code, f"unknown result code {code}")
        raise EMDError(f"{what}: {solver} failed: {msg} (result code {code}; "
                       f"problem {len(a)} x {len(b)}, n_iter_max={n_iter_max})")
    if not np.isfinite(cost):
        raise EMDError(f"{what}: {solver} returned a non-finite cost {cost}")
    return (cost, G, u) if duals else (cost, G)


def _small_solve(a: np.ndarray, b: np.ndarray, C: np.ndarray, n_iter_max: int, start: int,
                 stop: int, out: Optional[_ts.TransportSolution] = None,
                 basis: Optional[np.ndarray] = None, max_cells: Optional[int] = None):
    """Rows ``start:stop`` of the padded batch ``(B, N, M)`` with at most
    :data:`SMALL_PROBLEM_CELLS` real cells by :mod:`~physkit.ot.transport_simplex` (others:
    ``status`` SKIPPED) into ``out`` (allocated when None); inputs contiguous float64,
    rows balanced; ``basis``: optional warm start (:func:`~physkit.ot.transport_simplex.
    check_basis`); ``max_cells``: the size rule (None: :data:`SMALL_PROBLEM_CELLS`)."""
    if out is None:
        out = _ts.new_solution(*C.shape)
    cells = SMALL_PROBLEM_CELLS if max_cells is None else int(max_cells)
    _ts.solve_rows(C, a, b, start, stop, cells, int(n_iter_max),
                   _ts.default_block(*C.shape[1:]), out, basis=basis)
    return out


# ------------------------------------------------------------------ inputs
def _first_nonfinite_row(t: np.ndarray) -> Optional[int]:
    """Index of the first row (leading axis) of ``t`` holding a non-finite value, or None."""
    if np.isfinite(t).all():
        return None
    return int(np.flatnonzero(~np.isfinite(t.reshape(len(t), -1)).all(1))[0])


def _event_arrays(ev, dtype, what: str):
    """``(M, 3)`` array / tensor or one-jet Events -> (weights (k,), points (k, 2), rows (k,))."""
    if isinstance(ev, Events):
        if len(ev) != 1:
            raise ValueError(f"{what}: expected a single-jet Events, got {len(ev)} jets")
        arr = ev.to_padded()[0]
        arr[~ev.mask[0].cpu().numpy(), 0] = 0.0
    elif isinstance(ev, torch.Tensor):
        arr = ev.detach().cpu().numpy()
    else:
        arr = np.asarray(ev)
    arr = np.asarray(arr, dtype=dtype)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"{what}: expected an (M, 3) array of (weight, y, phi), got shape "
                         f"{arr.shape}")
    if not np.isfinite(arr[:, :3]).all():
        raise ValueError(f"{what}: non-finite value (NaN or inf)")
    w = arr[:, 0]
    if (w < 0).any():
        raise ValueError(f"{what}: negative weight in row {int(np.flatnonzero(w < 0)[0])}")
    rows = np.flatnonzero(w > 0)
    return (w[rows].astype(np.float64), arr[rows, 1:3].astype(np.float64), rows, arr.shape[0])


def _pair_problem(w0, p0, w1, p1, R, beta, norm, what, periodic_phi=True):
    """Build the balanced problem (a, b, C, scale) for one pair of prepared events.

    Returns None when the value is known without solving (an empty side)."""
    s0, s1 = w0.sum(), w1.sum()
    if norm:
        if s0 <= 0 or s1 <= 0:
            raise ValueError(f"{what}: cannot normalise an event with no (non-zero weight) "
                             f"particles")
        return w0 / s0, w1 / s1, cost_matrix(p0, p1, R, beta, periodic_phi=periodic_phi), 1.0
    if s0 <= 0 or s1 <= 0:
        return None
    C = cost_matrix(p0, p1, R, beta, periodic_phi=periodic_phi)
    diff = s1 - s0
    a, b = w0, w1
    if diff > 0:  # event 0 is lighter: its fake particle at distance R from everything
        a = np.append(w0, diff)
        C = np.vstack([C, np.ones((1, C.shape[1]))])
    elif diff < 0:
        b = np.append(w1, -diff)
        C = np.hstack([C, np.ones((C.shape[0], 1))])
    scale = max(s0, s1)
    return a / scale, b / scale, C, scale


def emd(ev0, ev1, R: float = 1.0, beta: float = 1.0, *, norm: bool = False,
        periodic_phi: bool = False, return_flow: bool = False, dtype=np.float64,
        n_iter_max: int = DEFAULT_N_ITER_MAX):
    """Exact EMD between two events, energyflow's ``emd`` conventions and defaults.

    Parameters
    ----------
    ev0, ev1 : ``(M, 3)`` array-like of (weight or pT, y, phi), or a one-jet ``Events``.
    R, beta : cost ``(theta / R) ** beta``; ``beta > 0``.
    norm : ``False`` (default, as energyflow): unnormalised EMD, ``+ |sum E - sum E'|``
        from moving the excess at distance ``R``. ``True``: both events normalised to
        unit weight.
    periodic_phi : wrap azimuthal differences into ``(-pi, pi]`` (default ``False``, as
        energyflow).
    return_flow : also return the optimal flow ``(M0, M1)`` indexed like the input rows
        (zero rows for zero-weight particles; with ``norm=False`` the flow to the fake
        particle is not included).
    dtype : dtype the inputs are cast to before the (float64) solve.
    n_iter_max : network-simplex iteration cap; reaching it raises :class:`EMDError`.

    Returns
    -------
    float, or ``(float, np.ndarray)`` with ``return_flow``.
    """
    _check_params(R, beta)
    w0, p0, r0, m0 = _event_arrays(ev0, dtype, "ev0")
    w1, p1, r1, m1 = _event_arrays(ev1, dtype, "ev1")
    prob = _pair_problem(w0, p0, w1, p1, R, beta, norm, "emd", periodic_phi)
    flow = np.zeros((m0, m1))
    if prob is None:
        value = float(abs(w0.sum() - w1.sum()))
    else:
        a, b, C, scale = prob
        value, G = _network_simplex(a, b, C, n_iter_max, flow=return_flow, what="emd")
        value *= scale
        if return_flow:
            flow[np.ix_(r0, r1)] = G[:len(r0), :len(r1)] * scale
    return (value, flow) if return_flow else value


def _as_event_list(events, what: str) -> list:
    """Sequence of ``(M, 3)`` arrays, a padded ``(N, M, 3)`` array, ``Events`` (any
    :attr:`~Events.level`: EMDs between whole events are fine), or awkward records."""
    if not isinstance(events, (Events, torch.Tensor, np.ndarray, list, tuple)):
        events = Events.as_jets(events, dtype=torch.float64, empty="zero")
    if isinstance(events, Events):
        arr = events.to_padded()
        arr[~events.mask.cpu().numpy(), 0] = 0.0
        return list(arr)
    if isinstance(events, torch.Tensor):
        events = events.detach().cpu().numpy()
    if isinstance(events, np.ndarray):
        if events.ndim != 3:
            raise ValueError(f"{what}: expected a padded (N, M, 3) array, got shape "
                             f"{events.shape}")
        return list(events)
    return list(events)


def _run_chunks(fn, chunks: list, n_jobs: int | None, progress: bool, desc: str):
    workers = min(n_workers(n_jobs), max(len(chunks), 1))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(chunks), desc=desc)
    try:
        if workers <= 1:
            for c in chunks:
                fn(c)
                if bar is not None:
                    bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers) as ex:
                for _ in ex.map(fn, chunks):
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def emds(events0, events1=None, R: float = 1.0, beta: float = 1.0, *, norm: bool = False,
         periodic_phi: bool = False, n_jobs: int | None = None, progress: bool = False,
         n_iter_max: int = DEFAULT_N_ITER_MAX) -> np.ndarray:
    """Pairwise exact EMDs, energyflow's ``emds`` conventions and defaults.

    Parameters
    ----------
    events0, events1 : sequences of ``(M, 3)`` arrays, padded ``(N, M, 3)`` arrays,
        ``Events`` or awkward records. ``events1=None`` computes the symmetric
        ``events0`` x ``events0`` matrix (only ``i < j`` solved; zero diagonal).
    R, beta, norm, periodic_phi : as :func:`emd` (defaults ``norm=False``,
        ``periodic_phi=False``, energyflow's).
    n_jobs : threads (POT releases the GIL); ``None`` or ``-1``: all available cores.
    progress : show a tqdm bar over chunks of pairs.

    Returns
    -------
    np.ndarray, shape ``(N0, N1)``, float64.
    """
    _check_params(R, beta)
    ev0 = [_event_arrays(e, np.float64, f"events0[{i}]")
           for i, e in enumerate(_as_event_list(events0, "events0"))]
    sym = events1 is None
    ev1 = ev0 if sym else [_event_arrays(e, np.float64, f"events1[{i}]")
                           for i, e in enumerate(_as_event_list(events1, "events1"))]
    n0, n1 = len(ev0), len(ev1)
    out = np.zeros((n0, n1))
    if sym:
        ii, jj = np.triu_indices(n0, k=1)
    else:
        ii, jj = (g.ravel() for g in np.meshgrid(np.arange(n0), np.arange(n1), indexing="ij"))
    n_pairs = len(ii)
    size = max(1, min(256, n_pairs // (8 * n_workers(n_jobs)) or 1))
    chunks = [(s, min(s + size, n_pairs)) for s in range(0, n_pairs, size)]

    def work(chunk):
        s, e = chunk
        for i, j in zip(ii[s:e], jj[s:e]):
            w0, p0, _, _ = ev0[i]
            w1, p1, _, _ = ev1[j]
            what = f"emds: pair ({i}, {j})"
            prob = _pair_problem(w0, p0, w1, p1, R, beta, norm, what, periodic_phi)
            if prob is None:
                out[i, j] = abs(w0.sum() - w1.sum())
            else:
                a, b, C, scale = prob
                out[i, j] = _network_simplex(a, b, C, n_iter_max, what=what)[0] * scale

    _run_chunks(work, chunks, n_jobs, progress, "emds")
    if sym:
        out[jj, ii] = out[ii, jj]
    return out


def _to_numpy(t, name: str, ndim: int) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != ndim:
        raise ValueError(f"emd_batch: {name} must have {ndim} dimensions, got shape {t.shape}")
    return t


def emd_batch(x, a, y, b, R: float = 1.0, beta: float = 1.0, *, n_jobs: int | None = None,
              n_iter_max: int = DEFAULT_N_ITER_MAX) -> np.ndarray:
    """Exact normalised EMD for a batch of padded problems.

    Parameters
    ----------
    x : ``(B, N, 2)`` points (y, phi); a : ``(B, N)`` non-negative weights (0 = padding).
    y : ``(B, M, 2)``; b : ``(B, M)``. numpy arrays or torch tensors (any device; detached).
    R, beta : cost ``(theta / R) ** beta`` with periodic phi.
    n_jobs : threads; ``None``: all available cores.

    Each row's weights are normalised to unit mass (``norm=True`` semantics).

    Returns
    -------
    np.ndarray ``(B,)`` float64.
    """
    return _batch_solve(x, a, y, b, R, beta, n_jobs, n_iter_max, False)[0]


def emd_batch_grads(x, a, y, b, R: float = 1.0, beta: float = 1.0, *,
                    n_jobs: int | None = None, n_iter_max: int = DEFAULT_N_ITER_MAX):
    """Exact normalised EMD of a batch of padded problems and its gradients with respect to
    the first side's weights and positions (the second side held fixed).

    Same inputs as :func:`emd_batch`. Returns numpy float64 ``value (B,)``,
    ``grad_a (B, N)`` and ``grad_x (B, N, 2)``:

    - ``grad_a``: derivative with respect to the raw weights ``a`` (the normalisation
      ``a / sum a`` included): ``(u_i - sum_j a_j u_j / sum a) / sum a`` with ``u`` the optimal
      dual potential of POT's network simplex. Where the optimal dual is not unique
      (degenerate problems, where EMD is not differentiable in ``a``) this is one subgradient.
    - ``grad_x``: ``sum_k P_ik dC_ik / dx_i`` with ``P`` the optimal plan and
      ``C = (theta / R) ** beta`` (phi periodic); a particle sitting on a point of ``y`` gets 0
      there (``beta <= 1``: a kink).

    Both are 0 where ``a`` is 0 (padding).
    """
    return _batch_solve(x, a, y, b, R, beta, n_jobs, n_iter_max, True)


def _batch_solve(x, a, y, b, R, beta, n_jobs, n_iter_max, grads: bool):
    _check_params(R, beta)
    what = "emd_batch_grads" if grads else "emd_batch"
    x, y = _to_numpy(x, "x", 3), _to_numpy(y, "y", 3)
    a, b = _to_numpy(a, "a", 2), _to_numpy(b, "b", 2)
    B = x.shape[0]
    if not (a.shape == x.shape[:2] and b.shape == y.shape[:2] and y.shape[0] == B):
        raise ValueError(f"{what}: shapes x {x.shape}, a {a.shape}, y {y.shape}, "
                         f"b {b.shape} do not match (B, N, 2), (B, N), (B, M, 2), (B, M)")
    for name, t in (("x", x), ("a", a), ("y", y), ("b", b)):
        row = _first_nonfinite_row(t)
        if row is not None:
            raise ValueError(f"{what}: non-finite value in {name}, row {row}")
    for name, w in (("a", a), ("b", b)):
        if (w < 0).any():
            raise ValueError(f"{what}: negative weight in {name}, row "
                             f"{int(np.flatnonzero((w < 0).any(1))[0])}")
        empty = w.sum(1) <= 0
        if empty.any():
            raise ValueError(f"{what}: {name} row {int(np.flatnonzero(empty)[0])} has no "
                             f"mass")
    out = np.empty(B)
    ga = np.zeros(a.shape) if grads else None
    gx = np.zeros(x.shape) if grads else None
    # costs in numpy, a few rows at a time (bounded memory), then POT per problem
    per_chunk = max(1, int(2_000_000 // max(1, x.shape[1] * y.shape[1])))
    chunks = [(s, min(s + per_chunk, B)) for s in range(0, B, per_chunk)]

    def work(chunk):
        s, e = chunk
        C = cost_matrix(x[s:e], y[s:e], R, beta)
        for k in range(s, e):
            ia = np.flatnonzero(a[k] > 0)
            ib = np.flatnonzero(b[k] > 0)
            Ck = C[k - s]
            if len(ia) < Ck.shape[0] or len(ib) < Ck.shape[1]:
                Ck = Ck[np.ix_(ia, ib)]
            wa, wb = a[k, ia], b[k, ib]
            sa = wa.sum()
            an = wa / sa
            res = _network_simplex(an, wb / wb.sum(), Ck, n_iter_max, flow=grads,
                                   what=f"{what}: row {k}", duals=grads)
            out[k] = res[0]
            if not grads:
                continue
            _, G, u = res
            ga[k, ia] = (u - an @ u) / sa
            d = x[k][ia][:, None, :] - y[k][ib][None, :, :]  # (n, m, 2)
            d[..., 1] = wrap_angle(d[..., 1])
            theta = np.hypot(d[..., 0], d[..., 1])
            on = theta > 0
            # dC/dx = beta theta^(beta - 2) (x - y) / R^beta
            coef = np.where(on, G * beta * np.where(on, theta, 1.0) ** (beta - 2.0), 0.0)
            gx[k, ia] = (coef[..., None] * d).sum(1) / R ** beta

    if len(chunks) < 4 * n_workers(n_jobs) and B > 1:  # finer chunks for load balance
        step = max(1, B // (4 * n_workers(n_jobs)))
        chunks = [(s, min(s + step, B)) for s in range(0, B, step)]
    _run_chunks(work, chunks, n_jobs, False, what)
    return out, ga, gx


class PlanBatch(NamedTuple):
    """Exact optimal transport of a batch of padded problems (:func:`emd_batch_plans`).

    value ``(B,)``; plan ``(B, N, M)`` (rows of ``a``'s side, columns of ``b``'s side, both
    normalised to unit mass); u ``(B, N)``, v ``(B, M)``: dual potentials, ``u_i + v_k <= C_ik``
    with equality on the plan's support, and ``value = sum_i a_i u_i + sum_k b_k v_k``.
    Zero-weight (padding) entries get the tightest feasible potential,
    ``v_k = min_{i: a_i > 0} (C_ik - u_i)`` (and likewise ``u_i``), so ``v_k`` prices moving
    an infinitesimal mass to a node that carries none.
    """

    value: torch.Tensor
    plan: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    basis: Optional[np.ndarray] = None


def emd_batch_plans(C, a, b, *, n_jobs: int | None = None,
                    n_iter_max: int = DEFAULT_N_ITER_MAX, basis=None,
                    max_cells: Optional[int] = None) -> PlanBatch:
    """Exact normalised optimal transport of ``B`` padded problems with precomputed costs.

    Parameters
    ----------
    C : ``(B, N, M)`` ground costs (torch tensor on any device, or numpy), finite.
    a : ``(B, N)``; b : ``(B, M)``: non-negative weights, 0 = padding; each row is normalised
        to unit mass (``norm=True`` semantics), so every row needs some mass on both sides.
    n_jobs : threads (POT releases the GIL); ``None``: all available cores.
    basis : optional warm start ``(B, L, 2)`` int (numpy), e.g. the ``basis`` of a previous
        call on problems of the same rows: see
        :func:`physkit.ot.transport_simplex.transport_simplex_batch`. Rows it does not fit
        (or POT's rows) start cold; the optimal value does not depend on it.
    max_cells : rows with at most this many real cells go to the transportation simplex,
        larger ones to POT (None: :data:`SMALL_PROBLEM_CELLS`); a caller that warm-starts
        its rows may raise it, warm solves of larger problems needing few pivots.

    Returns :class:`PlanBatch` of float64 torch tensors on ``C``'s device, and ``basis``
    ``(B, N + M - 1, 2)`` int64 numpy (host): each row's final basis as padded (row, column)
    pairs, -1 for rows solved by POT (above :data:`SMALL_PROBLEM_CELLS`). Each row is solved
    on its own (the batch does not change a row's numbers).
    """
    dev = C.device if isinstance(C, torch.Tensor) else torch.device("cpu")
    Cn = np.ascontiguousarray(_to_numpy(C, "C", 3))
    an, bn = _to_numpy(a, "a", 2), _to_numpy(b, "b", 2)
    B, N, M = Cn.shape
    if an.shape != (B, N) or bn.shape != (B, M):
        raise ValueError(f"emd_batch_plans: shapes C {Cn.shape}, a {an.shape}, b {bn.shape} do "
                         f"not match (B, N, M), (B, N), (B, M)")
    sa, sb = an.sum(1), bn.sum(1)
    for name, w, tot in (("a", an, sa), ("b", bn, sb)):
        if not np.isfinite(tot).all() or (w < 0).any():
            bad = ~np.isfinite(w).all(1) | (w < 0).any(1)
            raise ValueError(f"emd_batch_plans: negative or non-finite weight in {name}, row "
                             f"{int(np.flatnonzero(bad)[0])}")
        if (tot <= 0).any():
            raise ValueError(f"emd_batch_plans: {name} row {int(np.flatnonzero(tot <= 0)[0])} "
                             f"has no mass")
    an = an / sa[:, None]
    bn = bn * (an.sum(1) / sb)[:, None]
    value, plan = np.empty(B), np.empty((B, N, M))
    u, v = np.empty((B, N)), np.empty((B, M))

    bad = None if np.isfinite(Cn.sum()) else _first_nonfinite_row(Cn)  # one pass when finite
    if bad is not None:
        raise ValueError(f"emd_batch_plans: non-finite cost in row {bad}")

    basis = _ts.check_basis(basis, B)
    small = _ts.new_solution(B, N, M)._replace(plan=plan, cost=value, u=u, v=v)
    an, bn = np.ascontiguousarray(an), np.ascontiguousarray(bn)

    def work(chunk):
        _small_solve(an, bn, Cn, n_iter_max, *chunk, out=small, basis=basis,
                     max_cells=max_cells)
        for k in range(*chunk):
            code = small.status[k]
            if code == _ts.SKIPPED:
                G, cost, uk, vk, code = _solve_with_duals(an[k], bn[k], Cn[k], int(n_iter_max))
                value[k], plan[k], u[k], v[k] = cost, G, uk, vk
                solver = "POT network simplex"
            else:
                solver = "transportation simplex"
            if code != _OPTIMAL:
                msg = _RESULT_MESSAGES.get(code, f"unknown result code {code}")
                raise EMDError(f"emd_batch_plans: row {k}: {solver} failed: {msg}")

    workers = n_workers(n_jobs)
    step = max(1, -(-B // (4 * workers))) if workers > 1 else max(B, 1)
    _run_chunks(work, [(s, min(s + step, B)) for s in range(0, B, step)], n_jobs, False,
                "emd_batch_plans")
    real_a, real_b = an > 0, bn > 0
    rows, cols = np.nonzero(~real_b)  # price the nodes without mass, (row, node) pairs
    if len(rows):
        v[rows, cols] = np.where(real_a[rows], Cn[rows, :, cols] - u[rows], np.inf).min(1)
    rows, cols = np.nonzero(~real_a)
    if len(rows):
        u[rows, cols] = np.where(real_b[rows], Cn[rows, cols, :] - v[rows], np.inf).min(1)
    out = (torch.from_numpy(t).to(dev) for t in (value, plan, u, v))
    return PlanBatch(*out, basis=small.basis)
