"""The :class:`Shaper`: fit SHAPER observables to batches of jets, report exact EMD values.

Pipeline for each chunk of jets (all jets of a chunk at once, on ``device``):

1. sort each jet's particles real-first and group the jets by padded width
   (:mod:`shaper.batching`); centre every group on the jets' pT-weighted axes
   (:class:`shaper.group.JetGroup`); one exclusive-kT clustering of the whole chunk (one
   fastjet call, serving every ``n``) seeds centres and weights (:mod:`shaper.seeds`);
2. fit each observable:

   * **exact point path** (n-subjettiness, ``exact_points=True``; :mod:`shaper.points`): all
     jets of the chunk in one batch, ``n - 1`` fitted first; batched Lloyd / Weiszfeld /
     Newton iterations on the exact objective ``sum_i z_i min_j (theta_ij / R)^beta``
     (:mod:`shaper.lloyd`) from several structured starts per jet (kT axes, winner-take-all
     axes, ``n + 1`` kT axes less one, the ``(n-1)`` optimum plus the costliest particle),
     ``point_swaps`` rounds of local search (best-gain particles added and swapped in) and
     ``point_restarts`` perturbed restarts, then a polish of the best. On CPU the whole search
     of a jet is one compiled call (:mod:`shaper.point_kernel`); on other devices the
     batched torch search (``point_engine``); both search in float32 and polish in float64. The
     value never exceeds the kT-axes value nor tau_(n-1); it is an exact EMD (the optimal plan
     of n free-weight points is the nearest-centre assignment) and needs no POT call;
   * **general path** (every manifold; :mod:`shaper.general`): a multi-start flow from the kT
     initialisation and diverse further starts (``starts``; the optima of smaller family
     members fitted in the same call), as rows of one batch; every start is flowed
     ``screen_steps`` steps, then the first and each jet's ``screen_keep`` best flow on.
     ``flow="exact"``
     (default): majorise-minimise steps on the **exact** EMD between the jet and the shape's
     ``n_samples`` nodes per shape (:mod:`shaper.exact_flow`: exact plans and dual potentials,
     a Gauss-Newton step of the positional parameters, Adam on the weights, rows ending
     CONVERGED when their steps no longer lower the value); ``flow="sinkhorn"``: the previous
     flow, projected Adam on the debiased Sinkhorn divergence (:mod:`shaper.sinkhorn_flow`).
     By default (beta >= 1) the flow sees each jet **coarse-grained** to ``coarse_points`` =
     32 pseudo-particles (its exact 32-subjettiness optimum, :func:`shaper.lloyd.coarse_grain`),
     so all jets have the same width and the jets of every multiplicity group are flowed
     together (``bucket_size`` rows per flow, in parallel threads on CPU); the final report
     below is on the full jet either way. ``koopman`` adds Koopman (DMD) jumps to the flow;
3. report the **exact** EMD (:func:`physkit.ot.emd_batch`: a network simplex) between each jet
   and its fitted shape, sampled with ``n_eval_samples`` nodes per shape. On the general path
   the candidates are the flow's best end point, the first start's end point and initial
   parameters (the single-start fit), the raw kT initialisation and the embedded optima of
   smaller family members; each is evaluated exactly unless a cheap lower bound shows it cannot
   win (:func:`physkit.ot.bounds.emd_lower_bound`), and the best is kept. So the value never
   exceeds the one at the kT initialisation, multi-start never raises it above the single-start
   fit's, and when the smaller member of a nested family (:class:`shaper.family.Family`) was
   fitted in the same call (``n - 1`` prongs, or the observable without ``+pileup``), adding a
   component never raises the value by more than the quadrature error.

Positions are reported in the input's own (y, phi), phi wrapped into (-pi, pi].

**Batch independence.** A jet's values, parameters and statuses do not depend on the other
jets of the call (chunk size, order, buckets, threads; checked bit for bit in
``tests/shaper/test_batch_independence.py``): every jet is computed at a padded width set by its
own multiplicity (:func:`shaper.batching.padded_width`, multiples of 32; the coarse-grained
jets of the general-path flow are all ``coarse_points`` wide, each computed from its own jet),
jets of one width are fitted together (width groups run in parallel threads), the Sinkhorn
calls run with ``rowwise=True`` (per-row eps-scaling start, absorptions and fallbacks), shape
nodes are padded to multiples of 16 (:func:`shaper.batching.align_nodes`) and small per-jet
transcendental functions avoid SIMD tails (:mod:`physkit.simd`).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from physkit.angles import wrap_yphi
from physkit.cores import n_workers
from physkit.events import Events
from physkit.flow import Koopman, Status

from .batching import (fixed_width_frame, pad_to, padded_width, pinned_torch_threads, real_first,
                       thread_map, width_groups)
from .general import Flowed, GeneralPath
from .group import GroupFit, JetGroup
from .observables import Observable, from_family, from_name
from .points import PointBatch, point_engine as choose_point_engine
from .results import ObservableResult, Results

__all__ = ["Shaper", "padded_width"]

ObservableLike = Union[str, Observable]

#: the general path's flows and the defaults of the options left at None for each
#: (chosen on held-out sample jets: ``bench/shaper_settings.py``, bench/RESULTS.md)
FLOW_DEFAULTS = {
    "exact": dict(n_samples=24, steps=80, lr=0.25, patience=2, starts=("kt", "wide"),
                  polish_steps=4, screen_steps=12, screen_keep=2),
    "sinkhorn": dict(n_samples=15, steps=100, lr=0.04, patience=15, starts=(), polish_steps=0,
                     screen_steps=0, screen_keep=1),
}
#: ``coarse_points="auto"`` for beta >= 1 per flow (None below)
FLOW_COARSE_POINTS = {"exact": 32, "sinkhorn": 32}
#: choices of ``flow_engine`` (see :class:`Shaper`)
FLOW_ENGINES = ("auto", "torch")
#: names of the further starts of the general path (:meth:`shaper.general.GeneralPath.starts`)
START_KINDS = ("kt", "wide")
#: one group's report of one observable: (params (numpy, input frame), value, status, grads)
Report = Tuple[Dict[str, np.ndarray], np.ndarray, np.ndarray, Optional[Dict[str, torch.Tensor]]]


class Shaper:
    """Fit SHAPER observables to jets.

    Parameters
    ----------
    observables : observable names (see :func:`shaper.observables.from_name`) or
        :class:`~shaper.observables.Observable` objects.
    R, beta : EMD ground cost ``(theta / R)^beta``; ``R`` is also the jet radius (isotropy,
        pileup disk).
    device : torch device for the fits (``None``: CPU). All tensors follow it.
    flow : the general path's flow, ``"exact"`` (default) or ``"sinkhorn"`` (the flow before
        issue 15); see the module docstring. The options left at None take the flow's defaults
        (:data:`FLOW_DEFAULTS`).
    eps : Sinkhorn regularisation (units of the normalised cost) of the ``"sinkhorn"`` flow.
    n_samples : quadrature nodes per extended shape during the flow (None: 24 for the exact
        flow; 15 for the Sinkhorn flow, where two prongs of point + shape then make 32 nodes,
        within :data:`physkit.ot.sinkhorn.NEWTON_MAX_POINTS`, so every step's potentials are
        solved by Newton's method).
    n_eval_samples : quadrature nodes per extended shape for the final exact EMD (isotropy,
        whose shape is the whole jet disk: ``4 * n_eval_samples``). Fewer nodes trade the
        value's quadrature error for speed (isotropy's table in bench/RESULTS.md).
    steps, lr, tol, patience : flow settings (:func:`physkit.flow.minimize`): the step limit
        per row (None: 80 exact, 100 Sinkhorn), the Adam learning rate (of the weights in the
        exact flow; None: 0.25 exact, 0.04 Sinkhorn), the relative change of the value under
        which ``patience`` consecutive steps end a row at CONVERGED (None: 2 exact, 15 Sinkhorn).
    schedule : learning-rate schedule of the Sinkhorn flow (None, "cosine", "exp" or a
        callable step -> factor).
    starts : further starting points of the general path besides the kT initialisation, names
        from :data:`START_KINDS`: ``"kt"`` (the raw exclusive-kT initialisation, when
        ``refine_seeds``), ``"wide"`` (the observable's diverse seeds,
        :meth:`~shaper.observables.Observable.starts`: a wide shape on the hardest prong, a
        wide light shape around it, a narrow one on it). None: ``("kt", "wide")`` for the exact flow, none for the
        Sinkhorn flow.
    screen_steps : steps every start flows before only the first and each jet's
        ``screen_keep`` best go on (0, or >= steps: all flow to the end). None: 12 exact, 0
        Sinkhorn.
    screen_keep : how many of each jet's starts of least flow value after ``screen_steps``
        flow on besides the first (the first may be one of them). None: 2 exact, 1 Sinkhorn.
    koopman : :class:`physkit.flow.Koopman` DMD jump-ahead in the flow (None: off; it saves
        under a third of the exact flow's steps, bench/RESULTS.md).
    flow_engine : ``"auto"`` (default): the exact flow of shapes with affine nodes (1-ringiness,
        1-diskiness) runs in the compiled engine :mod:`shaper.affine_flow` on CPU (without
        ``koopman``), every other flow in torch; ``"torch"``: every flow in torch (the same
        numbers to rounding, slower).
    scaling, sinkhorn_iter, sinkhorn_tol : Sinkhorn eps-scaling factor, iteration cap per flow
        step (warm-started from the previous step's potentials), tolerance. ``sinkhorn_iter=None``
        (default): 1 where the solver uses Newton's method (jet or shape with at most
        :data:`~physkit.ot.sinkhorn.NEWTON_MAX_POINTS` points; warm-started, one Newton step per
        flow step tracks the moving shape), else 5 (Sinkhorn sweeps).
    sinkhorn_warmup : iteration cap of the first (cold) Sinkhorn solve at the initial shapes.
    exact_points : use the exact Lloyd path for n-subjettiness (else the general flow).
    lloyd_iter : cap on the Lloyd iterations of the exact point path's float64 polish.
    point_restarts : perturbed restarts per jet on the exact point path, in rounds of
        :data:`shaper.points.RESTART_ROUND` (every centre of the best fit so far moved within
        ``[-R, R]^2``, then searched); 0 (default) fits from the structured starts only. Each
        restart costs about as much as one more start; see ``bench/RESULTS.md`` for what they
        buy against fastjet-contrib's ``MultiPass_Axes``.
    point_swaps : most rounds of swap moves on the exact point path (:func:`shaper.points.
        local_search`: the ``(n-1)`` optimum plus a best-gain particle, and swap moves; a jet's
        rounds stop after one that gains less than :data:`shaper.points.ROUND_GAIN`); 0
        fits from the structured starts only (faster, more local minima).
    point_engine : engine of the exact point path: None (default) the compiled per-jet search
        (``"numba"``, :mod:`shaper.point_kernel`) on CPU and the batched torch search
        (``"torch"``) on other devices; or one of them by name (``"numba"`` on CPU only).
    chunk_size : jets per batch; bucket_size : rows per general-path flow (more rows per flow
        spread the per-step overhead). None: 128 on CPU, 4096 on other devices (there a step's
        cost is set by kernel launches, not rows, so one large bucket beats many small ones);
        progress : tqdm bar over chunks (None: when > 1 chunk).
    coarse_points : pseudo-particles per jet seen by the general-path flow (a positive
        multiple of 32, or None for the full jets); see the module docstring. The reported
        value is always the exact EMD to the full jet. ``"auto"`` (default): 32 for
        ``beta >= 1``, None for ``beta < 1`` -- a concave cost makes the short moves of the
        coarse-graining expensive.
    coarse_iter : Lloyd iterations of the coarse-graining (from exclusive-kT seeds).
    polish_steps : flow steps on the full jets after the coarse flow (0: none); with the exact
        flow, exact steps of the positional parameters on the full jets at the reported
        resolution from the best end point (None: 4 exact, 0 Sinkhorn).
    dtype : dtype of the general flow (float32 is faster; the exact steps run in float64).
    n_jobs : worker threads for the exact EMD and for the general-path buckets (None or -1:
        all cores available to the process). CPU only.
    torch_threads : torch intra-op threads while :meth:`compute` runs on CPU (restored after).
        The per-jet kernels are small: intra-op threading costs more than it gains, so cores
        are used by running buckets and exact EMDs in parallel threads instead. ``None`` leaves
        torch's setting.
    nested : also fit (without reporting) the smaller members of each observable's nested
        family that are not listed (``n - 1`` prongs down to 1, the observable without
        ``+pileup``), so that their optima seed it and the value never exceeds theirs. Off by
        default (it costs extra fits); listing the smaller members gives the same guarantee.
    refine_seeds : general path: start the flow from the exact n-subjettiness axes (Lloyd path,
        milliseconds) instead of the raw kT axes; the raw kT initialisation is still evaluated
        exactly and kept where it is better.
    seed : seeds torch's generator (the fit itself is deterministic: fixed quadrature, no noise).

    Every option is checked when the :class:`Shaper` is made (:meth:`_check_params`).
    """

    def __init__(self, observables: Union[ObservableLike, Sequence[ObservableLike]], R: float = 0.8,
                 beta: float = 1.0, device=None, *, eps: float = 0.05,
                 n_samples: Optional[int] = None, n_eval_samples: int = 96,
                 steps: Optional[int] = None, lr: Optional[float] = None, tol: float = 1e-4,
                 patience: Optional[int] = None, scaling: float = 0.5,
                 sinkhorn_iter: Optional[int] = None, sinkhorn_warmup: int = 300,
                 sinkhorn_tol: float = 1e-2, exact_points: bool = True, lloyd_iter: int = 200,
                 point_restarts: int = 0, point_swaps: int = 2,
                 point_engine: Optional[str] = None,
                 chunk_size: int = 2000, bucket_size: Optional[int] = None,
                 progress: Optional[bool] = None,
                 dtype: torch.dtype = torch.float32, n_jobs: Optional[int] = None,
                 torch_threads: Optional[int] = 1, nested: bool = False,
                 refine_seeds: bool = True, schedule=None, seed: int = 0,
                 coarse_points: Union[int, str, None] = "auto", coarse_iter: int = 5,
                 polish_steps: Optional[int] = None, flow: str = "exact",
                 starts: Optional[Sequence[str]] = None, screen_steps: Optional[int] = None,
                 screen_keep: Optional[int] = None, koopman: Optional[Koopman] = None,
                 flow_engine: str = "auto"):
        if isinstance(observables, (str, Observable)):
            observables = [observables]
        self.observables: List[Observable] = [o if isinstance(o, Observable) else from_name(o)
                                              for o in observables]
        self.R, self.beta, self.device = R, beta, device
        self.eps, self.n_samples, self.n_eval_samples = eps, n_samples, n_eval_samples
        self.steps, self.lr, self.tol, self.patience = steps, lr, tol, patience
        self.scaling, self.sinkhorn_tol = scaling, sinkhorn_tol
        self.sinkhorn_iter, self.sinkhorn_warmup = sinkhorn_iter, sinkhorn_warmup
        self.exact_points, self.lloyd_iter = exact_points, lloyd_iter
        self.point_restarts, self.point_swaps = point_restarts, point_swaps
        self.point_engine = point_engine
        self.chunk_size, self.progress, self.dtype = chunk_size, progress, dtype
        self.bucket_size = bucket_size
        self.n_jobs, self.seed, self.torch_threads = n_jobs, seed, torch_threads
        self.nested, self.refine_seeds, self.schedule = nested, refine_seeds, schedule
        self.coarse_points, self.coarse_iter, self.polish_steps = (coarse_points, coarse_iter,
                                                                   polish_steps)
        self.flow, self.starts, self.koopman = flow, starts, koopman
        self.screen_steps, self.screen_keep = screen_steps, screen_keep
        self.flow_engine = flow_engine
        self._check_params()

    def _check_params(self) -> None:
        """Check every option, with one message per option, and store it in normal form
        (numbers as float / int, ``device`` as :class:`torch.device`, ``bucket_size=None`` and
        ``coarse_points="auto"`` resolved)."""
        names = [o.name for o in self.observables]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate observable names: {names}")
        self.R = _real("R", self.R, "> 0", lambda v: v > 0)
        self.beta = _real("beta", self.beta, "> 0", lambda v: v > 0)
        self.device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        self.eps = _real("eps", self.eps, "> 0", lambda v: v > 0)
        self._resolve_flow_defaults()
        self.n_samples = _integer("n_samples", self.n_samples, 1)
        self.n_eval_samples = _integer("n_eval_samples", self.n_eval_samples, 1)
        self.steps = _integer("steps", self.steps, 0)
        self.lr = _real("lr", self.lr, "> 0", lambda v: v > 0)
        self.tol = _real("tol", self.tol, ">= 0", lambda v: v >= 0)
        self.patience = _integer("patience", self.patience, 1)
        if not callable(self.schedule) and self.schedule not in (None, "cosine", "exp"):
            raise ValueError(f"schedule must be None, 'cosine', 'exp' or a callable step -> lr "
                             f"factor, got {self.schedule!r}")
        _real("scaling", self.scaling, "in (0, 1)", lambda v: 0 < v < 1)
        _real("sinkhorn_tol", self.sinkhorn_tol, ">= 0", lambda v: v >= 0)
        self.sinkhorn_iter = _integer("sinkhorn_iter", self.sinkhorn_iter, 0, none=True)
        self.sinkhorn_warmup = _integer("sinkhorn_warmup", self.sinkhorn_warmup, 0)
        self.exact_points, self.lloyd_iter = bool(self.exact_points), _integer(
            "lloyd_iter", self.lloyd_iter, 0)
        self.point_restarts = _integer("point_restarts", self.point_restarts, 0)
        self.point_swaps = _integer("point_swaps", self.point_swaps, 0)
        self.point_engine = choose_point_engine(self.point_engine, self.device)
        self.chunk_size = _integer("chunk_size", self.chunk_size, 1)
        if self.bucket_size is None:
            self.bucket_size = 128 if self.device.type == "cpu" else 4096
        self.bucket_size = _integer("bucket_size", self.bucket_size, 1)
        if not (isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point):
            raise ValueError(f"dtype must be a torch floating-point dtype (e.g. torch.float32), "
                             f"got {self.dtype!r}")
        if self.n_jobs is not None and self.n_jobs != -1:
            _integer("n_jobs", self.n_jobs, 1, requirement="None, -1 or an integer >= 1")
        _integer("torch_threads", self.torch_threads, 1, none=True)
        self.seed = _integer("seed", self.seed, None)
        self.nested, self.refine_seeds = bool(self.nested), bool(self.refine_seeds)
        self.coarse_points = self._resolve_coarse_points(self.coarse_points)
        self.coarse_iter = _integer("coarse_iter", self.coarse_iter, 0)
        self.polish_steps = _integer("polish_steps", self.polish_steps, 0)
        self.screen_steps = _integer("screen_steps", self.screen_steps, 0)
        self.screen_keep = _integer("screen_keep", self.screen_keep, 0)
        if self.koopman is not None and not isinstance(self.koopman, Koopman):
            raise ValueError(f"koopman must be None or a physkit.flow.Koopman, got "
                             f"{self.koopman!r}")
        if self.flow_engine not in FLOW_ENGINES:
            raise ValueError(f"flow_engine must be one of {FLOW_ENGINES}, got "
                             f"{self.flow_engine!r}")

    def _resolve_flow_defaults(self) -> None:
        """Check ``flow`` and ``starts``; fill the options left at None with ``flow``'s
        defaults (:data:`FLOW_DEFAULTS`)."""
        if self.flow not in FLOW_DEFAULTS:
            raise ValueError(f"flow must be one of {sorted(FLOW_DEFAULTS)}, got {self.flow!r}")
        for k, v in FLOW_DEFAULTS[self.flow].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        starts = (self.starts,) if isinstance(self.starts, str) else self.starts
        try:
            starts = tuple(starts)
            ok = all(isinstance(x, str) and x in START_KINDS for x in starts)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"starts must be None or a sequence of names from {START_KINDS}, "
                             f"got {self.starts!r}")
        self.starts = starts

    def _resolve_coarse_points(self, value) -> Optional[int]:
        if isinstance(value, str) and value == "auto":
            return FLOW_COARSE_POINTS[self.flow] if self.beta >= 1 else None
        return _integer("coarse_points", value, 32, none=True, multiple=32,
                        requirement="a positive multiple of 32, None or 'auto'")

    def settings(self) -> Dict[str, object]:
        """The settings that determine the reported numbers (stored with the results)."""
        return {"R": self.R, "beta": self.beta, "eps": self.eps, "n_samples": self.n_samples,
                "n_eval_samples": self.n_eval_samples, "steps": self.steps, "lr": self.lr,
                "tol": self.tol, "patience": self.patience, "exact_points": self.exact_points,
                "point_restarts": self.point_restarts, "point_swaps": self.point_swaps,
                "point_engine": self.point_engine,
                "coarse_points": self.coarse_points, "flow": self.flow,
                "starts": list(self.starts), "polish_steps": self.polish_steps,
                "screen_steps": self.screen_steps, "screen_keep": self.screen_keep,
                "koopman": None if self.koopman is None else repr(self.koopman),
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
        ev = _as_events(events)
        threads = self.torch_threads if self.device.type == "cpu" else None
        with pinned_torch_threads(threads):
            return self._compute(ev, return_grads)

    def exact_values(self, events, observable: ObservableLike,
                     params: Dict[str, np.ndarray]) -> np.ndarray:
        """Exact EMD ``(N,)`` between each jet and the shape ``params`` of ``observable``.

        ``params``: name -> ``(N, ...)`` arrays named as the observable's parameters, positions in
        the events' own (y, phi) (as :meth:`compute` reports them; e.g. another tool's fitted
        parameters, to compare on equal terms). Shapes are sampled with ``n_eval_samples``
        nodes per shape; weights must lie on the simplex.
        """
        obs = observable if isinstance(observable, Observable) else from_name(observable)
        ev = _as_events(events).to(self.device, torch.float64)
        if bool((ev.n_particles() == 0).any()):
            raise ValueError("exact_values: some events have no particles")
        axis, cen, z = fixed_width_frame(ev)
        p = {}
        for k, spec in obs.specs.items():
            v = torch.as_tensor(np.asarray(params[k]), dtype=torch.float64, device=self.device)
            if spec.kind == "position":
                v = wrap_yphi(v - axis.reshape([v.shape[0]] + [1] * (v.dim() - 2) + [2]))
            p[k] = v
        return GeneralPath(self).exact(obs, p, cen.points(), z, self.n_jobs).cpu().numpy()

    # ------------------------------------------------------------------ chunks
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
        """Worker threads: ``n_jobs`` on CPU (None or -1: every available core), 1 elsewhere."""
        return n_workers(self.n_jobs) if self.device.type == "cpu" else 1

    def _chunk(self, ev: Events, return_grads: bool) -> Results:
        """Fit a chunk: jets grouped by padded width (which depends on the jet's own
        multiplicity only), each group fitted on its own, results put back in order. A jet's
        numbers therefore do not depend on its neighbours, the chunk size or order."""
        ev = ev.to(self.device, torch.float64)
        if len(ev) == 0:
            return self._empty_results()
        m_in = ev.shape[1]
        ev, order = real_first(ev)
        todo = width_groups(ev.n_particles())
        todo.sort(key=lambda t: -t[0].numel() * t[1])  # biggest first (load balance)
        workers = min(self._workers(), len(todo))
        # width groups side by side in threads (torch kernels release the GIL), each
        # single-threaded inside; with one group, its buckets and exact EMDs use the threads.
        # Rows are independent, so results do not depend on this split.
        inner = 1 if workers > 1 else self._workers()
        with thread_map(workers) as pmap:
            groups = pmap(lambda t: self._prepare(pad_to(ev[t[0]], t[1]), inner), todo)
            points = PointBatch(groups, R=self.R, beta=self.beta, max_iter=self.lloyd_iter,
                                restarts=self.point_restarts, swaps=self.point_swaps,
                                engine=self.point_engine,
                                workers=self._workers())
            reports = {o.name: self._fit_observable(o, groups, points, return_grads, pmap)
                       for o in self.observables}
        rows = [r for r, _ in todo]
        return Results({name: _assemble(rows, per_group, len(ev), m_in, order, return_grads)
                        for name, per_group in reports.items()})

    def _empty_results(self) -> Results:
        return Results({o.name: ObservableResult(
            np.zeros(0), {k: np.zeros((0, *sp.shape)) for k, sp in o.specs.items()},
            np.zeros(0, np.int8)) for o in self.observables})

    def _prepare(self, ev: Events, workers: int = 1) -> JetGroup:
        """Group of jets that share one padded width (particles sorted real-first); ``workers``
        threads for this group's buckets and exact EMDs. Its ``refined_seeds`` are set by the
        chunk's :class:`~shaper.points.PointBatch`."""
        return JetGroup.from_events(ev, workers)

    # ------------------------------------------------------------------ per observable
    def _fit_observable(self, obs: Observable, groups: List[JetGroup], points: PointBatch,
                        return_grads: bool, pmap: Callable[..., list]) -> List[Report]:
        """Fit ``obs`` to every group (``pmap``: map over the group threads; the point path
        fits all groups in one batch, ``points``); record the fit in each group's nested
        family and return each group's report."""
        if self.nested:
            pmap(lambda g: self._fit_smaller(obs, g, points), groups)
        shared: List[Optional[Flowed]] = [None] * len(groups)
        if self._on_point_path(obs):
            points.fit(obs.n_points)  # every group at once, before the group threads
        elif obs.specs and self.coarse_points is not None:
            shared = GeneralPath(self).shared_flow(obs, groups, self._workers())
        fits = pmap(lambda i: self._fit(obs, groups[i], points, return_grads, shared[i]),
                    range(len(groups)))
        reports = []
        for group, fit in zip(groups, fits):
            if obs.family is not None:
                group.fitted[obs.family] = fit.params
            reports.append(self._report(obs, fit, group))
        return reports

    def _on_point_path(self, obs: Observable) -> bool:
        return obs.n_points is not None and self.exact_points

    def _fit(self, obs: Observable, group: JetGroup, points: PointBatch, return_grads: bool,
             shared: Optional[Flowed] = None) -> GroupFit:
        """``obs`` fitted to ``group`` on the exact point path or the general path."""
        if self._on_point_path(obs):
            return points.group_fit(group, obs.n_points, return_grads)
        return GeneralPath(self).fit(obs, group, return_grads, shared)

    def _fit_smaller(self, obs: Observable, group: JetGroup, points: PointBatch) -> None:
        """Fit the smaller members of ``obs``'s nested family that this call does not list
        (``nested=True``), so that their optima seed ``obs``."""
        if obs.family is None:
            return
        for fam in obs.family.smaller():
            if fam in group.fitted:
                continue
            sub = from_family(fam)
            self._fit_smaller(sub, group, points)
            group.fitted[fam] = self._fit(sub, group, points, False).params

    def _report(self, obs: Observable, fit: GroupFit, group: JetGroup) -> Report:
        """One group's fit in the input frame (numpy): empty jets flagged BAD_INPUT with value
        and parameters NaN (as the command line writes rows it could not fit), non-finite
        values of a fit flagged NONFINITE with value 0."""
        status = torch.where(group.empty, torch.full_like(fit.status, int(Status.BAD_INPUT)),
                             fit.status)
        rep = {}
        for k, v in fit.params.items():
            v = v.detach().to(torch.float64)
            if obs.specs[k].kind == "position":
                v = wrap_yphi(v + group.axis.reshape([v.shape[0]] + [1] * (v.dim() - 2) + [2]))
            rep[k] = v.cpu().numpy().copy()  # NaN for empty jets below: not the fit's tensors
        g = None
        if fit.grads is not None:
            g = {"pt": fit.grads["pt"].detach().to(torch.float64),
                 "points": fit.grads["points"].detach().to(torch.float64)}
        val = fit.value.detach().to(torch.float64).cpu().numpy().copy()
        st = status.to(torch.int8).cpu().numpy()
        empty = group.empty.cpu().numpy()
        bad = ~np.isfinite(val) & ~empty
        if bad.any():  # a fit never reports NaN: flag the row instead
            val[bad] = 0.0
            st[bad] = int(Status.NONFINITE)
        val[empty] = np.nan
        for v in rep.values():
            v[empty] = np.nan
        return rep, val, st, g


def _assemble(rows: List[torch.Tensor], reports: List[Report], B: int, m_in: int,
              order: torch.Tensor, return_grads: bool) -> ObservableResult:
    """One observable's result on a chunk of ``B`` jets from its groups' reports (``rows``:
    each group's jets); gradients go back to the input's particle order (``order (B, M)``,
    :func:`shaper.batching.real_first`), ``m_in`` or more columns wide."""
    first = reports[0]
    val = np.empty(B)
    st = np.empty(B, np.int8)
    params = {k: np.empty((B,) + v.shape[1:]) for k, v in first[0].items()}
    for r, (pr, v, stt, _) in zip(rows, reports):
        r = r.cpu().numpy()
        val[r], st[r] = v, stt
        for k in params:
            params[k][r] = pr[k]
    grads = None
    if return_grads:
        width = max(m_in, max(g[3]["pt"].shape[1] for g in reports))
        gp = torch.zeros(B, width, dtype=torch.float64, device=order.device)
        gx = torch.zeros(B, width, 2, dtype=torch.float64, device=order.device)
        for r, (_, _, _, gr) in zip(rows, reports):
            m = gr["pt"].shape[1]
            gp[r, :m] = gr["pt"]
            gx[r, :m] = gr["points"]
        inv = torch.argsort(order, dim=1)  # back to the input's particle order
        grads = {"pt": torch.gather(gp, 1, inv).cpu().numpy(),
                 "points": torch.gather(gx, 1, inv[..., None].expand(-1, -1, 2)).cpu().numpy()}
    return ObservableResult(val, params, st, grads)


def _as_events(events) -> Events:
    return Events.as_jets(events, dtype=torch.float64, empty="zero")


# ------------------------------------------------------------------ option checks

def _real(name: str, value, requirement: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a finite float that satisfies ``ok``; else a ValueError naming the option."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and ok(v)):
        raise ValueError(f"{name} must be a number {requirement}, got {value!r}")
    return v


def _integer(name: str, value, low: Optional[int], *, none: bool = False, multiple: int = 1,
             requirement: Optional[str] = None) -> Optional[int]:
    """``value`` as an int ``>= low`` (any int for ``low=None``), a multiple of ``multiple``
    (None passes when ``none``); else a ValueError naming the option."""
    if value is None and none:
        return None
    try:
        v = float(value)
        ok = v.is_integer() and (low is None or v >= low) and int(value) % multiple == 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        if requirement is None:
            requirement = "an integer" + ("" if low is None else f" >= {low}")
            requirement += " or None" if none else ""
        raise ValueError(f"{name} must be {requirement}, got {value!r}")
    return int(value)
