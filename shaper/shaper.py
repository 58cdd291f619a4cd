"""The :class:`Shaper`: fit SHAPER observables to batches of jets, report exact EMD values.

Pipeline for each chunk of jets (all jets of a chunk at once, on ``device``):

1. centre the jets on their pT-weighted axis; cluster all of them with exclusive kT (one
   fastjet call per ``n``) to seed centres and weights (:mod:`shaper.seeds`);
2. fit each observable:

   * **exact point path** (n-subjettiness, ``exact_points=True``): batched Lloyd / Weiszfeld
     iterations on the exact objective ``sum_i z_i min_j (theta_ij / R)^beta`` from two seeds per
     jet (kT axes and the hardest particle of each kT subjet; plus, when ``(n-1)``-subjettiness
     was fitted in the same call, its axes and the costliest particle, so tau_n <= tau_(n-1)),
     best kept (:mod:`shaper.lloyd`). The value is an exact EMD (the optimal plan of n free-weight
     points is the nearest-centre assignment) and needs no POT call;
   * **general path** (every manifold): projected Adam flow (:func:`physkit.flow.minimize`) on the
     debiased Sinkhorn divergence (:func:`physkit.ot.sinkhorn_divergence`) between the jet and the
     shape's quadrature nodes (``n_samples`` per shape), with the dual potentials warm-started
     from step to step per jet and the jet's self-potential cached (``eps`` fixed, no annealing).
     By default (beta >= 1) the flow sees each jet **coarse-grained** to ``coarse_points`` = 32
     pseudo-particles: its exact 32-subjettiness optimum (Lloyd path from exclusive-kT seeds),
     the 32-point cloud nearest to the jet in EMD (:func:`shaper.lloyd.coarse_grain`; for
     beta = 1 the EMD from any shape to the coarse jet differs from that to the jet by at most
     their distance tau_32, median ~0.005 on the sample, and the fitted values by far less);
     jets with at most 32 particles are kept as they are. All jets then have the same width, so the jets of every multiplicity
     group are flowed together in one batch (``bucket_size`` rows per flow, in parallel
     threads on CPU) instead of one flow per group: on 200 held-out sample jets,
     2-(point+disk)iness takes half the CPU of flowing the full jets, with fitted exact values
     0.05% higher at the median (mean +0.4%; the final report below is on the full jet either
     way). ``polish_steps`` > 0 adds flow steps on the full
     jets; ``coarse_points=None`` flows the full jets;
3. report the **exact** EMD (:func:`physkit.ot.emd_batch`, POT network simplex) between each jet
   and its fitted shape, sampled with ``n_eval_samples`` nodes per shape; on the general path the
   exact value at the kT initialisation is computed as well and the better of the two parameter
   sets is kept, so the value never exceeds the one at the initial parameters. When the smaller
   member of a nested family was fitted in the same call (``n - 1`` prongs, or the observable
   without ``+pileup``), its optimum embedded in the larger family (new prong with zero weight,
   pileup fraction 0) is a further candidate, so adding a component never raises the value by
   more than the quadrature error.

Positions are reported in the input's own (y, phi), phi wrapped into (-pi, pi].

**Batch independence.** A jet's values, parameters and statuses do not depend on the other
jets of the call (chunk size, order, buckets, threads; checked bit for bit in
``tests/test_shaper_batch_independence.py``): every jet is computed at a padded width set by its
own multiplicity (:func:`padded_width`, multiples of 32; the coarse-grained jets of the
general-path flow are all ``coarse_points`` wide, each computed from its own jet), jets of one
width are fitted together (width groups run in parallel threads), the Sinkhorn calls run with ``rowwise=True`` (per-row eps-scaling start,
absorptions and fallbacks), shape nodes are padded to multiples of 16 (:func:`_align_nodes`)
and small per-jet transcendental functions avoid SIMD tails (:mod:`physkit.simd`).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from physkit.angles import wrap_angle
from physkit.events import Events
from physkit.flow import Status, minimize
from physkit.ot import SinkhornPotentials, emd_batch, emd_batch_grads, sinkhorn_divergence
from physkit.ot.sinkhorn import NEWTON_MAX_POINTS

from .lloyd import coarse_grain, fit_points, point_value_grads
from .observables import Observable, from_name
from .results import ObservableResult, Results
from .seeds import KtSeeds

ObservableLike = Union[str, Observable]

#: rows per Lloyd block
_LLOYD_ROWS = 512

# torch's intra-op thread count is process-wide. Concurrent compute() calls (dask worker
# threads, a thread pool) used to save/restore it each on its own, so one call's restore put
# the others back to all cores mid-fit (intra-op threading on these small kernels is many
# times slower on a loaded machine). The first caller in pins it, the last one out restores.
_PIN_LOCK = threading.Lock()
_PIN_USERS = 0
_PIN_SAVED = 0


def _pin_threads(n: int) -> None:
    global _PIN_USERS, _PIN_SAVED
    with _PIN_LOCK:
        if _PIN_USERS == 0:
            _PIN_SAVED = torch.get_num_threads()
            torch.set_num_threads(int(n))
        _PIN_USERS += 1


def _unpin_threads() -> None:
    global _PIN_USERS
    with _PIN_LOCK:
        _PIN_USERS -= 1
        if _PIN_USERS == 0:
            torch.set_num_threads(_PIN_SAVED)


def padded_width(n_particles: torch.Tensor) -> torch.Tensor:
    """Padded width ``(B,)`` int64 at which each jet is computed: its multiplicity rounded up to
    a multiple of 32 (of 64 above 256 particles). It depends on the jet's own multiplicity
    only, so every reduction over a jet's particles runs in the same order whatever batch the
    jet is in, and each row of a batched tensor spans whole SIMD vectors (see
    :mod:`physkit.simd`). Steps of 32 rather than 16: half as many width groups (each group is
    a separate flow, with its own per-step overhead) for ~10% more padding; measured faster."""
    n = n_particles.to(torch.int64).clamp_min(1)
    step = torch.where(n > 256, 64, 32)
    return (n + step - 1) // step * step


def _pad_to(ev: Events, width: int) -> Events:
    """Jets with real particles first, cut or zero-padded to ``width`` columns."""
    m = ev.shape[1]
    if m >= width:
        return Events(ev.pt[:, :width], ev.y[:, :width], ev.phi[:, :width], ev.mask[:, :width])
    pad = width - m

    def grow(t):
        return torch.nn.functional.pad(t, (0, pad))

    return Events(grow(ev.pt), grow(ev.y), grow(ev.phi),
                  torch.nn.functional.pad(ev.mask, (0, pad), value=False))


def _frame(ev: Events):
    """Axis ``(B, 2)`` and centred jets (:meth:`Events.axis`, :meth:`Events.centered`)."""
    axis = ev.axis()
    return axis, ev.centered(axis)


def _align_nodes(y: torch.Tensor, b: torch.Tensor):
    """Pad a shape's nodes ``y (B, K, 2)``, weights ``b (B, K)`` with masked zero-weight nodes to a
    multiple of 16 columns; returns ``(y, b, mask (B, K'))``. Every row of the flow's tensors then
    spans whole SIMD vectors: torch's vectorised kernels (exp, log) round differently from
    their scalar tails, and which row lands in the tail depends on the batch."""
    k = y.shape[1]
    pad = (-k) % 16
    mask = torch.ones(y.shape[0], k + pad, dtype=torch.bool, device=y.device)
    if pad:
        y = torch.nn.functional.pad(y, (0, 0, 0, pad))
        b = torch.nn.functional.pad(b, (0, pad))
        mask[:, k:] = False
    return y, b, mask


def _fixed_width_frame(ev: Events):
    """Axis ``(B, 2)``, centred jets and their weights ``(B, M)``, each jet computed at its
    :func:`padded_width` (particles sorted real-first); jets come back at the widest width."""
    order = torch.argsort((~ev.mask).to(torch.int8), dim=1, stable=True)
    ev = Events(*(torch.gather(t, 1, order) for t in (ev.pt, ev.y, ev.phi)),
                torch.gather(ev.mask, 1, order))
    widths = padded_width(ev.n_particles())
    top = int(widths.max())
    B = len(ev)
    axis = torch.empty(B, 2, dtype=ev.pt.dtype, device=ev.pt.device)
    cen = _pad_to(ev, top)
    pt, y, phi, mask = cen.pt.clone(), cen.y.clone(), cen.phi.clone(), cen.mask.clone()
    z = torch.zeros_like(pt)
    for w in torch.unique(widths).tolist():
        rows = torch.nonzero(widths == w).squeeze(1)
        g = _pad_to(ev[rows], int(w))
        axis[rows], c = _frame(g)
        y[rows, :int(w)], phi[rows, :int(w)] = c.y, c.phi
        z[rows, :int(w)] = c.weights()
    return axis, Events(pt, y, phi, mask), z


def _as_events(events, device) -> Events:
    if isinstance(events, Events):
        return events
    if isinstance(events, torch.Tensor) or isinstance(events, np.ndarray):
        return Events.from_padded(events, dtype=torch.float64, empty="zero")
    try:  # awkward
        return Events.from_awkward(events, dtype=torch.float64, empty="zero")
    except Exception as exc:  # pragma: no cover - message only
        raise TypeError("events must be physkit Events, a padded (N, M, 3) (pT, y, phi) array "
                        f"or an awkward array of particles; got {type(events).__name__}") from exc


class Shaper:
    """Fit SHAPER observables to jets.

    Parameters
    ----------
    observables : observable names (see :func:`shaper.observables.from_name`) or
        :class:`~shaper.observables.Observable` objects.
    R, beta : EMD ground cost ``(theta / R)^beta``; ``R`` is also the jet radius (isotropy,
        pileup disk).
    device : torch device for the fits (``None``: CPU). All tensors follow it.
    eps : Sinkhorn regularisation (units of the normalised cost) driving the general flow.
    n_samples : quadrature nodes per extended shape during the flow. Default 15: two prongs
        of point + shape then make 2 + 2 * 15 = 32 nodes, within
        :data:`physkit.ot.sinkhorn.NEWTON_MAX_POINTS`, so every flow step's potentials are
        solved by Newton's method instead of a few Sinkhorn sweeps (2-point-diskiness on 200
        sample jets: ~25% less CPU and a ~1% lower mean exact EMD than with 16 nodes).
    n_eval_samples : quadrature nodes per extended shape for the final exact EMD.
    steps, lr, schedule, tol, patience : flow settings (:func:`physkit.flow.minimize`, Adam;
        ``schedule``: None, "cosine", "exp" or a callable step -> lr factor). lr = 0.04 was
        chosen on 200 held-out sample jets (not the benchmark's), by the mean exact EMD, over
        0.015-0.05 with 100-150 steps, and checked on seven observables.
    scaling, sinkhorn_iter, sinkhorn_tol : Sinkhorn eps-scaling factor, iteration cap per flow
        step (warm-started from the previous step's potentials), tolerance. ``sinkhorn_iter=None``
        (default): 1 where the solver uses Newton's method (jet or shape with at most
        :data:`~physkit.ot.sinkhorn.NEWTON_MAX_POINTS` points; warm-started, one Newton step per
        flow step tracks the moving shape: measured same exact values as 5, ~20% less CPU),
        else 5 (Sinkhorn sweeps).
    sinkhorn_warmup : iteration cap of the first (cold) Sinkhorn solve at the initial shapes.
    exact_points : use the exact Lloyd path for n-subjettiness (else the general flow).
    lloyd_iter : cap on Lloyd iterations.
    chunk_size : jets per batch; bucket_size : rows per general-path flow (more rows per flow
        spread the per-step overhead). None: 128 on CPU (measured faster than 64, as fast as
        512), 4096 on other devices (not measured -- no GPU was available; there a step's cost
        is set by kernel launches, not rows, so one large bucket beats many small ones);
        progress : tqdm bar over chunks (None: when > 1 chunk).
    coarse_points : pseudo-particles per jet seen by the general-path flow (a positive
        multiple of 32, or None for the full jets); see the module docstring. The reported
        value is always the exact EMD to the full jet. ``"auto"`` (default): 32 for
        ``beta >= 1``, None for ``beta < 1`` -- a concave cost makes the short moves of the
        coarse-graining expensive (``bench/shaper_settings.py`` on 200 held-out sample jets: at
        beta = 0.5 coarse-graining raises the mean value by 1.3%; at beta = 1 it is +0.4%, at
        beta = 2 -0.8%, for half the CPU).
    coarse_iter : Lloyd iterations of the coarse-graining (from exclusive-kT seeds).
    polish_steps : flow steps on the full jets after the coarse flow (0: none; measured no
        gain on held-out sample jets, at extra cost).
    dtype : dtype of the general flow (float32 is faster; the exact steps run in float64).
    n_jobs : worker threads for the exact EMD and for the general-path buckets (None: all
        cores available to the process). CPU only.
    torch_threads : torch intra-op threads while :meth:`compute` runs on CPU (restored after).
        The per-jet kernels are small: intra-op threading costs more than it gains (measured
        16x slower with 2 threads on a loaded 2-core machine), so cores are used by running
        buckets and exact EMDs in parallel threads instead. ``None`` leaves torch's setting.
    nested : also fit (without reporting) the smaller members of each observable's nested
        family that are not listed (``n - 1`` prongs down to 1, the observable without
        ``+pileup``), so that their optima seed it and the value never exceeds theirs. Off by
        default (it costs extra fits); listing the smaller members gives the same guarantee.
    refine_seeds : general path: start the flow from the exact n-subjettiness axes (Lloyd path,
        milliseconds) instead of the raw kT axes; the raw kT initialisation is still evaluated
        exactly and kept where it is better.
    seed : seeds torch's generator (the fit itself is deterministic: fixed quadrature, no noise).
    """

    def __init__(self, observables: Union[ObservableLike, Sequence[ObservableLike]], R: float = 0.8,
                 beta: float = 1.0, device=None, *, eps: float = 0.05, n_samples: int = 15,
                 n_eval_samples: int = 96, steps: int = 100, lr: float = 0.04, tol: float = 1e-4,
                 patience: int = 15, scaling: float = 0.5, sinkhorn_iter: Optional[int] = None,
                 sinkhorn_warmup: int = 300, sinkhorn_tol: float = 1e-2,
                 exact_points: bool = True, lloyd_iter: int = 200,
                 chunk_size: int = 2000, bucket_size: Optional[int] = None,
                 progress: Optional[bool] = None,
                 dtype: torch.dtype = torch.float32, n_jobs: Optional[int] = None,
                 torch_threads: Optional[int] = 1, nested: bool = False,
                 refine_seeds: bool = True, schedule=None, seed: int = 0,
                 coarse_points: Union[int, str, None] = "auto", coarse_iter: int = 5,
                 polish_steps: int = 0):
        if isinstance(observables, (str, Observable)):
            observables = [observables]
        self.observables: List[Observable] = [o if isinstance(o, Observable) else from_name(o)
                                              for o in observables]
        names = [o.name for o in self.observables]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate observable names: {names}")
        if not (R > 0 and beta > 0):
            raise ValueError(f"R and beta must be > 0, got R={R}, beta={beta}")
        self.R, self.beta = float(R), float(beta)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.eps, self.n_samples, self.n_eval_samples = float(eps), int(n_samples), int(n_eval_samples)
        self.steps, self.lr, self.tol, self.patience = int(steps), float(lr), float(tol), int(patience)
        self.scaling, self.sinkhorn_tol = scaling, sinkhorn_tol
        self.sinkhorn_iter = None if sinkhorn_iter is None else int(sinkhorn_iter)
        self.sinkhorn_warmup = int(sinkhorn_warmup)
        self.exact_points, self.lloyd_iter = bool(exact_points), int(lloyd_iter)
        self.chunk_size, self.progress, self.dtype = int(chunk_size), progress, dtype
        if bucket_size is None:
            bucket_size = 128 if self.device.type == "cpu" else 4096
        self.bucket_size = int(bucket_size)
        self.n_jobs, self.seed, self.torch_threads = n_jobs, int(seed), torch_threads
        self.nested = bool(nested)
        self.refine_seeds = bool(refine_seeds)
        self.schedule = schedule
        if coarse_points == "auto":
            coarse_points = 32 if beta >= 1 else None
        if coarse_points is not None and (int(coarse_points) <= 0 or int(coarse_points) % 32):
            raise ValueError(f"coarse_points must be a positive multiple of 32 or None, got "
                             f"{coarse_points!r}")
        self.coarse_points = None if coarse_points is None else int(coarse_points)
        self.coarse_iter, self.polish_steps = int(coarse_iter), int(polish_steps)

    def settings(self) -> Dict[str, object]:
        return {"R": self.R, "beta": self.beta, "eps": self.eps, "n_samples": self.n_samples,
                "n_eval_samples": self.n_eval_samples, "steps": self.steps, "lr": self.lr,
                "tol": self.tol, "patience": self.patience, "exact_points": self.exact_points,
                "coarse_points": self.coarse_points,
                "observables": [o.name for o in self.observables]}

    # ------------------------------------------------------------------ public
    def compute(self, events, return_grads: bool = False) -> Results:
        """Fit every observable to every jet.

        ``events``: :class:`physkit.events.Events`, a padded ``(N, M, 3)`` (pT, y, phi) array,
        or an awkward array of particles. Returns :class:`shaper.Results`. ``return_grads``:
        also d value / d pT and d value / d(y, phi) of every particle at the fitted shape
        (:attr:`shaper.ObservableResult.grads`).
        """
        torch.manual_seed(self.seed)
        ev = _as_events(events, self.device)
        pin = self.device.type == "cpu" and self.torch_threads is not None
        if pin:
            _pin_threads(self.torch_threads)
        try:
            return self._compute(ev, return_grads)
        finally:
            if pin:
                _unpin_threads()

    def exact_values(self, events, observable: ObservableLike,
                     params: Dict[str, np.ndarray]) -> np.ndarray:
        """Exact EMD ``(N,)`` between each jet and the shape ``params`` of ``observable``.

        ``params``: name -> ``(N, ...)`` arrays named as the observable's parameters, positions in
        the events' own (y, phi) (as :meth:`compute` reports them; e.g. another tool's fitted
        parameters, to compare on equal terms). Shapes are sampled with ``n_eval_samples``
        nodes per shape; weights must lie on the simplex.
        """
        obs = observable if isinstance(observable, Observable) else from_name(observable)
        ev = _as_events(events, self.device).to(self.device, torch.float64)
        if bool((ev.n_particles() == 0).any()):
            raise ValueError("exact_values: some events have no particles")
        axis, cen, z = _fixed_width_frame(ev)
        p = {}
        for k, spec in obs.specs.items():
            v = torch.as_tensor(np.asarray(params[k]), dtype=torch.float64, device=self.device)
            if spec.kind == "position":
                v = v - axis.reshape([v.shape[0]] + [1] * (v.dim() - 2) + [2])
                v = torch.stack([v[..., 0], wrap_angle(v[..., 1])], dim=-1)
            p[k] = v
        jet = {"x": cen.points(), "z": z}
        return self._exact(obs, p, jet).cpu().numpy()

    def _compute(self, ev: Events, return_grads: bool) -> Results:
        n = len(ev)
        starts = list(range(0, n, self.chunk_size)) or [0]
        show = self.progress if self.progress is not None else len(starts) > 1
        it = starts
        if show:
            from tqdm.auto import tqdm
            it = tqdm(starts, desc="shaper", unit="chunk")
        parts = [self._chunk(ev[s:s + self.chunk_size], return_grads) for s in it]
        out = Results.concat(parts)
        out.settings = self.settings()
        out.observables = {o.name: o for o in self.observables}
        return out

    def _workers(self) -> int:
        if self.device.type != "cpu":
            return 1
        if self.n_jobs is not None:
            return max(1, int(self.n_jobs))
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)

    # ------------------------------------------------------------------ per chunk
    def _chunk(self, ev: Events, return_grads: bool) -> Results:
        """Fit a chunk: jets grouped by padded width (:func:`padded_width`, which depends on the
        jet's own multiplicity only), each group fitted on its own, results put back in order.
        A jet's numbers therefore do not depend on its neighbours, the chunk size or order."""
        ev = ev.to(self.device, torch.float64)
        B = len(ev)
        if B == 0:
            return Results({o.name: ObservableResult(
                np.zeros(0), {k: np.zeros((0, *sp.shape)) for k, sp in o.specs.items()},
                np.zeros(0, np.int8)) for o in self.observables})
        m_in = ev.shape[1]
        order = torch.argsort((~ev.mask).to(torch.int8), dim=1, stable=True)  # real first
        ev = Events(*(torch.gather(t, 1, order) for t in (ev.pt, ev.y, ev.phi)),
                    torch.gather(ev.mask, 1, order))
        widths = padded_width(ev.n_particles())
        todo = [(torch.nonzero(widths == w).squeeze(1), int(w)) for w in torch.unique(widths).tolist()]
        todo.sort(key=lambda t: -t[0].numel() * t[1])  # biggest first (load balance)
        workers = min(self._workers(), len(todo))
        # width groups side by side in threads (torch kernels release the GIL), each
        # single-threaded inside; with one group, its buckets and exact EMDs use the threads.
        # Rows are independent, so results do not depend on this split.
        inner = 1 if workers > 1 else self._workers()
        pool = ThreadPoolExecutor(workers) if workers > 1 else None

        def pmap(fn, n):
            return list(pool.map(fn, range(n))) if pool is not None else [fn(i) for i in range(n)]

        G = len(todo)
        try:
            jets = pmap(lambda i: self._prepare(_pad_to(ev[todo[i][0]], todo[i][1]), inner), G)
            fitted: List[Dict[object, Dict[str, torch.Tensor]]] = [j["fitted"] for j in jets]
            per_group: List[Dict[str, tuple]] = [{} for _ in range(G)]
            for obs in self.observables:
                if self.nested:
                    pmap(lambda i: self._fit_smaller(obs, jets[i], fitted[i]), G)
                points = obs.n_points is not None and self.exact_points
                shared = None
                if not points and obs.specs and self.coarse_points is not None:
                    shared = self._shared_flow(obs, jets, fitted)

                def fit_one(i):
                    if points:
                        return self._fit_points(obs, jets[i], return_grads, fitted[i])
                    return self._fit_general(obs, jets[i], fitted[i], return_grads,
                                             None if shared is None else shared[i])

                for i, (params, value, status, grads) in enumerate(pmap(fit_one, G)):
                    if obs.family is not None:
                        fitted[i][obs.family] = params
                    empty = jets[i]["empty"]
                    status = torch.where(empty, torch.full_like(status, int(Status.BAD_INPUT)),
                                         status)
                    value = torch.where(empty, torch.zeros_like(value), value)
                    per_group[i][obs.name] = self._report(obs, params, value, status, grads,
                                                          jets[i]["axis"])
        finally:
            if pool is not None:
                pool.shutdown()
        groups = [(todo[i][0], per_group[i]) for i in range(G)]
        out = {}
        for obs in self.observables:
            parts = [(rows, g[obs.name]) for rows, g in groups]
            first = parts[0][1]
            val = np.empty(B)
            st = np.empty(B, np.int8)
            params = {k: np.empty((B,) + v.shape[1:]) for k, v in first[0].items()}
            for rows, (pr, v, stt, _) in parts:
                r = rows.cpu().numpy()
                val[r], st[r] = v, stt
                for k in params:
                    params[k][r] = pr[k]
            grads = None
            if return_grads:
                width = max(m_in, max(g[3]["pt"].shape[1] for _, g in parts))
                gp = torch.zeros(B, width, dtype=torch.float64, device=order.device)
                gx = torch.zeros(B, width, 2, dtype=torch.float64, device=order.device)
                for rows, (_, _, _, gr) in parts:
                    m = gr["pt"].shape[1]
                    gp[rows, :m] = gr["pt"]
                    gx[rows, :m] = gr["points"]
                inv = torch.argsort(order, dim=1)  # back to the input's particle order
                grads = {"pt": torch.gather(gp, 1, inv).cpu().numpy(),
                         "points": torch.gather(gx, 1, inv[..., None].expand(-1, -1, 2)).cpu().numpy()}
            out[obs.name] = ObservableResult(val, params, st, grads)
        return Results(out)

    def _prepare(self, ev: Events, workers: int = 1) -> Dict[str, object]:
        """Per-group state for jets that share one padded width (particles sorted real-first):
        frame, kT seeds, weights; ``workers`` threads for this group's buckets and exact EMDs."""
        empty = ev.n_particles() == 0
        if bool(empty.any()):  # a stand-in particle at the origin; reported as BAD_INPUT
            pt = ev.pt.clone()
            mask = ev.mask.clone()
            pt[empty, 0] = 1.0
            mask[empty, 0] = True
            ev = Events(pt, ev.y, ev.phi, mask)
        axis, cen = _frame(ev)
        jet = {"x": cen.points(), "z": cen.weights(), "mask": cen.mask, "pt_sum": cen.pt.sum(1),
               "seeds": KtSeeds(cen), "workers": workers, "axis": axis, "empty": empty}
        jet["fitted"] = fitted = {}
        jet["lloyd"] = _LloydSeeds(self, jet, fitted)
        return jet

    def _fit_smaller(self, obs, jet, fitted) -> None:
        """Fit the smaller members of ``obs``'s nested family that this call does not list
        (``nested=True``), so that their optima seed ``obs``."""
        if obs.family is None:
            return
        kind, n = obs.family
        smaller = []
        if kind.endswith("+pileup"):
            smaller.append((kind[:-7], n))
        if n > 1:
            smaller.append((kind, n - 1))
        for fam in smaller:
            if fam in fitted:
                continue
            base, k = fam
            name = base if base.startswith("isotropy") else f"{k}-{base}"
            sub = from_name(name)
            self._fit_smaller(sub, jet, fitted)
            if sub.n_points is not None and self.exact_points:
                p = self._fit_points(sub, jet, False, fitted)[0]
            else:
                p = self._fit_general(sub, jet, fitted, False)[0]
            fitted[fam] = p

    def _report(self, obs, params, value, status, grads, axis):
        """(params in the input frame (numpy), value, status, grads) of one group."""
        rep = {}
        for k, v in params.items():
            spec = obs.specs[k]
            v = v.detach().to(torch.float64)
            if spec.kind == "position":
                shape = [v.shape[0]] + [1] * (v.dim() - 2) + [2]
                v = v + axis.reshape(shape)
                v = torch.stack([v[..., 0], wrap_angle(v[..., 1])], dim=-1)
            rep[k] = v.cpu().numpy()
        g = None
        if grads is not None:
            g = {"pt": grads["pt"].detach().to(torch.float64),
                 "points": grads["points"].detach().to(torch.float64)}
        val = value.detach().to(torch.float64).cpu().numpy()
        st = status.to(torch.int8).cpu().numpy()
        bad = ~np.isfinite(val)
        if bad.any():  # never report NaN: flag the row instead
            val[bad] = 0.0
            st[bad] = int(Status.NONFINITE)
        return rep, val, st, g

    # ------------------------------------------------------------------ exact point path
    def _fit_points(self, obs, jet, return_grads, fitted=None):
        n = obs.n_points
        x, z = jet["x"], jet["z"]
        c_kt, _ = jet["seeds"].subjets(n)
        # second seed: the hardest particle nearest to each kT axis (a winner-take-all axis)
        d = x[:, :, None, :] - c_kt[:, None, :, :]
        d = torch.stack([d[..., 0], wrap_angle(d[..., 1])], -1).norm(dim=-1)  # (B, M, n)
        near = torch.nn.functional.one_hot(d.argmin(-1), n).to(z.dtype) * z[:, :, None]
        hard = near.argmax(dim=1)  # (B, n)
        has = near.amax(dim=1) > 0
        c_wta = torch.gather(x, 1, hard[..., None].expand(-1, -1, 2))
        c_wta = torch.where(has[..., None], c_wta, c_kt)
        starts = [c_kt, c_wta]
        prev = (fitted or {}).get(("subjettiness", n - 1))
        if prev is not None:
            # the (n-1)-axes optimum plus the particle that costs most: tau_n <= tau_(n-1)
            cp = prev["centers"]
            dp = x[:, :, None, :] - cp[:, None, :, :]
            dp = torch.stack([dp[..., 0], wrap_angle(dp[..., 1])], -1).norm(dim=-1).amin(-1)
            far = (z * dp ** self.beta).argmax(dim=1)
            extra = x[torch.arange(x.shape[0], device=x.device), far][:, None]
            starts.append(torch.cat([cp, extra], dim=1))
        starts = torch.stack(starts, dim=1)
        # all jets of the group share one padded width (set by their own multiplicity), so a
        # jet's reductions run in the same order whatever batch it is in; rows are
        # independent, fitted in fixed blocks of rows (bounded memory)
        B = x.shape[0]
        c = torch.empty(B, n, 2, dtype=x.dtype, device=x.device)
        w = torch.empty(B, n, dtype=x.dtype, device=x.device)
        v = torch.empty(B, dtype=x.dtype, device=x.device)
        iters = torch.empty(B, dtype=torch.int64, device=x.device)
        for lo in range(0, B, _LLOYD_ROWS):
            rows = slice(lo, lo + _LLOYD_ROWS)
            c[rows], w[rows], v[rows], iters[rows] = fit_points(
                x[rows], z[rows], starts[rows], R=self.R, beta=self.beta,
                max_iter=self.lloyd_iter)
        status = torch.where(iters >= self.lloyd_iter, int(Status.MAX_STEPS), int(Status.CONVERGED))
        grads = None
        if return_grads:
            gp, gx = point_value_grads(x, z, jet["pt_sum"], c, self.R, self.beta)
            grads = {"pt": gp, "points": gx}
        return {"centers": c, "weights": w}, v, status.to(torch.int8), grads

    # ------------------------------------------------------------------ general path
    def _exact(self, obs, params, jet) -> torch.Tensor:
        """Exact EMD ``(B,)`` between the jets and the shapes ``params`` (fine quadrature)."""
        p = {k: v.detach().to(torch.float64) for k, v in params.items()}
        p["_batch"] = jet["z"]
        with torch.no_grad():
            y, b = obs.sample(p, self.n_eval_samples, self.R)
        b = b.clamp_min(0)
        v = emd_batch(jet["x"], jet["z"], y, b, R=self.R, beta=self.beta,
                      n_jobs=jet.get("workers", self.n_jobs))
        return torch.as_tensor(v, dtype=torch.float64, device=jet["z"].device)

    def _candidates(self, obs, jet, fitted) -> List[Dict[str, torch.Tensor]]:
        """Initial parameter sets: kT seeds, plus embeddings of fitted smaller family members."""
        cands = [obs.init(jet["lloyd"] if self.refine_seeds else jet["seeds"], self.R)]
        fam = obs.family
        if fam is None:
            return cands
        kind, n = fam
        if kind.endswith("+pileup") and (kind[:-7], n) in fitted:
            p = {k: v.clone() for k, v in fitted[(kind[:-7], n)].items()}
            p["pileup_fraction"] = torch.zeros_like(jet["z"][:, 0])
            cands.append(p)
        if n > 1 and (kind, n - 1) in fitted:
            cands.append(_expand(obs, fitted[(kind, n - 1)], cands[0], n))
        return cands

    def _start(self, obs, jet, fitted):
        """Starting parameters: (candidate sets, their projections stacked ``(S * B, ...)`` in
        the flow dtype)."""
        cands = self._candidates(obs, jet, fitted)
        constraints = obs.constraints
        p0 = {k: constraints[k].project(torch.cat([c[k] for c in cands]).to(self.dtype))
              for k in obs.specs}
        return cands, p0

    def _run_buckets(self, obs, xs, zs, ms, p0, steps, workers, order=None):
        """Flow rows ``(n, ...)`` in buckets of at most ``bucket_size`` rows (at least one per
        worker thread); returns (params, status ``(n,)`` int8). Rows are independent, so the
        split does not change any result."""
        n = xs.shape[0]
        if order is None:
            order = torch.arange(n, device=xs.device)
        size = max(1, min(self.bucket_size, -(-n // max(1, workers))))
        buckets = [order[lo:lo + size] for lo in range(0, n, size)]

        def run(rows):  # full width: a row's arithmetic does not depend on the bucket
            return self._flow(obs, xs[rows].to(self.dtype), zs[rows].to(self.dtype), ms[rows],
                              {k: v[rows] for k, v in p0.items()}, steps)

        workers = min(workers, len(buckets))
        if workers > 1:  # torch kernels release the GIL: buckets run side by side
            with ThreadPoolExecutor(workers) as pool:
                outs = list(pool.map(run, buckets))
        else:
            outs = [run(rows) for rows in buckets]
        flowed = {k: v.clone() for k, v in p0.items()}
        status = torch.zeros(n, dtype=torch.int8, device=xs.device)
        for rows, (pb, st) in zip(buckets, outs):
            for k in flowed:
                flowed[k][rows] = pb[k].to(flowed[k].dtype)
            status[rows] = st.to(torch.int8)
        return flowed, status

    def _shared_flow(self, obs, jets, fitted):
        """The flow of every width group at once on coarse-grained jets (all
        ``coarse_points`` wide, see :meth:`_coarse`): one batched flow instead of one per group.
        Returns, per group, ``(candidates, flowed params (S * B, ...), status (S * B,))``."""
        per, xs, zs, ms = [], [], [], []
        for jet, fit in zip(jets, fitted):
            cands, p0 = self._start(obs, jet, fit)
            cx, cz, cm = self._coarse(jet)
            S = len(cands)
            per.append((cands, p0))
            xs.append(cx.repeat(S, 1, 1))
            zs.append(cz.repeat(S, 1))
            ms.append(cm.repeat(S, 1))
        p0 = {k: torch.cat([p[1][k] for p in per]) for k in obs.specs}
        flowed, status = self._run_buckets(obs, torch.cat(xs), torch.cat(zs), torch.cat(ms), p0,
                                           self.steps, self._workers())
        out, lo = [], 0
        for cands, p in per:
            n = next(iter(p.values())).shape[0]
            out.append((cands, {k: v[lo:lo + n] for k, v in flowed.items()}, status[lo:lo + n]))
            lo += n
        return out

    def _fit_general(self, obs, jet, fitted, return_grads, shared=None):
        x, z, mask = jet["x"], jet["z"], jet["mask"]
        B = x.shape[0]
        if not obs.specs:  # nothing to fit (isotropy)
            v = self._exact(obs, {}, jet)
            grads = self._grads(obs, {}, jet) if return_grads else None
            return {}, v, torch.zeros(B, dtype=torch.int8, device=x.device), grads
        inner = jet.get("workers", 1)
        if shared is not None:  # flowed already, with every width group (_shared_flow)
            cands, res_params, res_status = shared
            S = len(cands)
        else:
            cands, p0 = self._start(obs, jet, fitted)
            S = len(cands)
            if self.coarse_points is not None:  # the flow runs on the coarse-grained jets
                cx, cz, cm = self._coarse(jet)
                xs, zs, ms = cx.repeat(S, 1, 1), cz.repeat(S, 1), cm.repeat(S, 1)
            else:
                xs, zs, ms = x.repeat(S, 1, 1), z.repeat(S, 1), mask.repeat(S, 1)
            # buckets of similar multiplicity (less padding work in the (b, M, K) kernels)
            order = torch.argsort(ms.sum(1), stable=True)
            res_params, res_status = self._run_buckets(obs, xs, zs, ms, p0, self.steps, inner,
                                                       order)
        if self.polish_steps > 0 and self.coarse_points is not None:
            # a few steps on the full jets correct the coarse-graining
            res_params, _ = self._run_buckets(obs, x.repeat(S, 1, 1), z.repeat(S, 1),
                                              mask.repeat(S, 1), res_params, self.polish_steps,
                                              inner)
        # exact values at every start and every flowed end point; keep the best per jet
        sets = [{k: v.to(torch.float64) for k, v in c.items()} for c in cands]
        sets += [{k: v[s * B:(s + 1) * B].detach().to(torch.float64) for k, v in res_params.items()}
                 for s in range(S)]
        if self.refine_seeds:  # the plain kT initialisation is a candidate too (not flowed)
            sets.append({k: v.to(torch.float64) for k, v in obs.init(jet["seeds"], self.R).items()})
        vals = torch.stack([self._exact(obs, p, jet) for p in sets])  # (2S, B)
        vals = torch.where(torch.isfinite(vals), vals, torch.full_like(vals, float("inf")))
        best = vals.argmin(dim=0)
        ar = torch.arange(B, device=x.device)
        params = {k: torch.stack([p[k] for p in sets])[best, ar] for k in obs.specs}
        value = vals[best, ar]
        st_all = res_status.reshape(S, B)
        status = st_all[torch.where(best < 2 * S, best % S, torch.zeros_like(best)), ar]
        grads = self._grads(obs, params, jet) if return_grads else None
        return params, value, status, grads

    def _coarse(self, jet):
        """Coarse-grained jets ``(x (B, n, 2), z (B, n), mask (B, n))``, ``n = coarse_points``:
        a jet with more than n particles becomes the exact n-subjettiness optimum (Lloyd path
        from exclusive-kT seeds: n points with the energy of their nearest particles, the
        n-point cloud nearest to the jet in EMD, at distance tau_n), a jet with at most n
        particles is kept as it is (zero-padded to n). Each jet's result depends on that jet
        only (its group's width is set by its own multiplicity)."""
        if "coarse" not in jet:
            n = self.coarse_points
            x, z, mask = jet["x"], jet["z"], jet["mask"]
            if x.shape[1] > n:  # every jet of this group has more than n particles
                c0, _ = jet["seeds"].subjets(n)
                jet["coarse"] = coarse_grain(x, z, c0, R=self.R, beta=self.beta,
                                             max_iter=self.coarse_iter)[:3]
            else:
                pad = n - x.shape[1]
                jet["coarse"] = (torch.nn.functional.pad(x, (0, 0, 0, pad)),
                                 torch.nn.functional.pad(z, (0, pad)),
                                 torch.nn.functional.pad(mask, (0, pad), value=False))
        return jet["coarse"]

    def _flow(self, obs, xs, zs, ms, p0, steps):
        """Adam flow on the Sinkhorn divergence for one bucket of rows; returns (params, status)."""
        n = xs.shape[0]
        cache: Dict[str, torch.Tensor] = {}

        def sinkhorn(params, idx, max_iter):
            params = dict(params)
            params["_batch"] = zs[idx]
            y, b = obs.sample(params, self.n_samples, self.R)
            y, b, mask_y = _align_nodes(y, b)
            warm = None
            if cache:
                warm = SinkhornPotentials(cache["f"][idx], cache["g"][idx], None, cache["q"][idx],
                                          self.eps, None, None)
            return sinkhorn_divergence(
                xs[idx], zs[idx], y, b, R=self.R, beta=self.beta, eps=self.eps, mask_x=ms[idx],
                mask_y=mask_y,
                scaling=self.scaling, max_iter=max_iter, tol=self.sinkhorn_tol,
                warm_start=warm, return_potentials=True, rowwise=True,
                self_x=cache["p"][idx] if cache else None)

        # converge the potentials once at the start; then a few warm-started iterations per
        # step track the moving shape
        with torch.no_grad():
            _, pot = sinkhorn(p0, torch.arange(n, device=xs.device), self.sinkhorn_warmup)
        cache.update(f=pot.f.clone(), g=pot.g.clone(), p=pot.p.clone(), q=pot.q.clone())

        per_step = self.sinkhorn_iter
        if per_step is None:
            k = obs.sample({**{kk: v[:1] for kk, v in p0.items()}, "_batch": zs[:1]},
                           self.n_samples, self.R)[0].shape[1]
            k += (-k) % 16  # as padded by _align_nodes
            per_step = 1 if min(xs.shape[1], k) <= NEWTON_MAX_POINTS else 5

        def loss_fn(params, idx):
            s, pot = sinkhorn(params, idx, per_step)
            cache["f"][idx], cache["g"][idx], cache["q"][idx] = pot.f, pot.g, pot.q
            return s

        if steps <= 0:
            return p0, torch.full((n,), int(Status.MAX_STEPS), dtype=torch.int8, device=xs.device)
        res = minimize(loss_fn, p0, obs.constraints, steps=steps, optimizer="adam",
                       lr=self.lr, schedule=self.schedule, tol=self.tol, patience=self.patience,
                       device=xs.device)
        return res.params, res.status

    def _grads(self, obs, params, jet) -> Dict[str, torch.Tensor]:
        """d value / d pT and d value / d(y, phi) of the particles at fixed fitted shape (the
        derivative of the observable where the fit is a local optimum: envelope theorem), from
        the exact EMD's optimal plan and dual potentials (:func:`physkit.ot.emd_batch_grads`)
        at the reported quadrature (``n_eval_samples``)."""
        p = {k: v.detach().to(torch.float64) for k, v in params.items()}
        p["_batch"] = jet["z"]
        with torch.no_grad():
            y, b = obs.sample(p, self.n_eval_samples, self.R)
        pt = jet["z"] * jet["pt_sum"][:, None]
        _, gp, gx = emd_batch_grads(jet["x"], pt, y, b.clamp_min(0), R=self.R, beta=self.beta,
                                    n_jobs=jet.get("workers", self.n_jobs))
        dev = jet["z"].device
        m = jet["mask"]
        gp = torch.as_tensor(gp, dtype=torch.float64, device=dev)
        gx = torch.as_tensor(gx, dtype=torch.float64, device=dev)
        return {"pt": torch.where(m, gp, torch.zeros_like(gp)),
                "points": torch.where(m[..., None], gx, torch.zeros_like(gx))}


class _LloydSeeds:
    """Seeds with the same interface as :class:`KtSeeds` whose ``subjets(n)`` are the exact
    n-subjettiness optimum (Lloyd path) instead of the raw kT axes (cached per ``n``)."""

    def __init__(self, shaper: "Shaper", jet, fitted):
        self.shaper, self.jet, self.fitted = shaper, jet, fitted
        self.jets = jet["seeds"].jets
        self._cache = {}

    def __len__(self) -> int:
        return len(self.jets)

    def subjets(self, n: int):
        done = self.fitted.get(("subjettiness", n))
        if done is not None:  # n-subjettiness is among this call's observables
            return done["centers"], done["weights"]
        if n not in self._cache:
            from .observables import nsubjettiness
            p = self.shaper._fit_points(nsubjettiness(n), self.jet, False)[0]
            self._cache[n] = (p["centers"], p["weights"])
        return self._cache[n]


def _expand(obs: Observable, small: Dict[str, torch.Tensor], kt: Dict[str, torch.Tensor], n: int
            ) -> Dict[str, torch.Tensor]:
    """Embed an ``(n-1)``-prong optimum into the ``n``-prong family: the extra prong takes the kT
    init's last centre and shape with zero weight (same shape as the smaller optimum)."""
    out = {}
    for k, spec in obs.specs.items():
        if k == "weights":
            w = small[k]
            if w.shape[1] == 2 * (n - 1):  # points then shapes
                zero = torch.zeros_like(w[:, :1])
                out[k] = torch.cat([w[:, :n - 1], zero, w[:, n - 1:], zero], dim=1)
            else:
                out[k] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
        elif k == "pileup_fraction":
            out[k] = small[k].clone()
        elif spec.shape and spec.shape[0] == n:
            out[k] = torch.cat([small[k], kt[k][:, n - 1:n].to(small[k].dtype)], dim=1)
        else:
            out[k] = small[k].clone()
    return out
