"""Sinkhorn iterations at a fixed eps in the stabilised scaling form (Schmitzer 2019).

A potential is held as ``f = f_abs + eps lu``: the kernel ``G_ij = exp((f_abs_i + g_abs_j -
C_ij) / eps)`` absorbs ``f_abs``, ``g_abs``, and between absorptions an iteration is two
batched mat-vec products on ``u = exp(lu)``, ``v = exp(lv)``, ~10x cheaper than a logsumexp
pass. A row is absorbed (``f_abs <- f_abs + eps lu``, ``lu <- 0``, kernel rebuilt) when its
log-scalings exceed ``tau``, and a step whose kernel row underflowed is taken in the log
domain instead. Which rows take those steps is decided by a
:class:`~physkit.ot.batch_mode.BatchMode` (per row, or for the whole batch).

* :func:`sinkhorn_at_eps`: ``OT_eps(a, b)``, over-relaxed, converged rows dropped from the
  working set once half of it has converged;
* :func:`solve_self`: the symmetric ``OT_eps(w, w)`` by averaged iterations
  ``p <- (p + T(p)) / 2``, which converge in a handful of iterations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional

import torch

from .batch_mode import BatchMode
from .softmin import softmin_cols, softmin_rows


def _bounds(dt: torch.dtype) -> tuple[float, float]:
    """``(logmax, tau)``: kernel exponents are clamped at ``logmax``; log-scalings beyond
    ``tau`` are absorbed."""
    return 0.5 * math.log(torch.finfo(dt).max), (30.0 if dt == torch.float64 else 12.0)


class _Rows:
    """A dataclass of per-row tensors, all indexed by the row on their first axis."""

    def take(self, idx: torch.Tensor):
        """The same data for the rows ``idx`` only."""
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


@dataclass
class ScaledPotentials(_Rows):
    """Potentials ``f + eps lu`` ``(B, N)`` (and ``g + eps lv`` ``(B, M)``, absent for a
    symmetric problem) in the scaling form, with the kernel ``G`` built from ``f``, ``g``."""

    f: torch.Tensor
    lu: torch.Tensor
    g: Optional[torch.Tensor] = None
    lv: Optional[torch.Tensor] = None
    G: Optional[torch.Tensor] = None

    def absorb(self, rows: torch.Tensor, eps: float) -> None:
        """Move the log-scalings of the rows ``rows`` ``(B,)`` bool into the potentials (the
        caller rebuilds ``G``)."""
        m = rows[:, None]
        self.f = torch.where(m, self.f + eps * self.lu, self.f)
        if self.g is not None:
            self.g = torch.where(m, self.g + eps * self.lv, self.g)
        self.lu = torch.where(m, torch.zeros_like(self.lu), self.lu)
        if self.g is not None:
            self.lv = torch.where(m, torch.zeros_like(self.lv), self.lv)

    def value(self, eps: float):
        """The potentials ``(f + eps lu, g + eps lv)`` (``g`` term None when absent)."""
        return self.f + eps * self.lu, (None if self.g is None else self.g + eps * self.lv)


@dataclass
class _WorkingSet(_Rows):
    """The rows still iterated by :func:`sinkhorn_at_eps`: cost ``C`` ``(b, N, M)``,
    log-weights / weights ``la, wa`` ``(b, N)``, ``lb, wb, bn`` (normalised) ``(b, M)``,
    masks ``vx``, ``vy``, ``pair``, relaxation ``omega`` ``(b, 1)``, last error ``err``."""

    C: torch.Tensor
    la: torch.Tensor
    lb: torch.Tensor
    wa: torch.Tensor
    wb: torch.Tensor
    bn: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor
    pair: torch.Tensor
    omega: torch.Tensor
    err: torch.Tensor


def _cross_kernel(ws: _WorkingSet, st: ScaledPotentials, eps: float) -> torch.Tensor:
    """``G_ij = exp((f_i + g_j - C_ij) / eps)`` ``(b, N, M)``, 0 off the masks."""
    logmax = _bounds(st.f.dtype)[0]
    arg = (st.f[:, :, None] + st.g[:, None, :] - ws.C) / eps
    return torch.where(ws.pair, torch.exp(arg.clamp(max=logmax)), st.f.new_zeros(()))


def _sinkhorn_step(st: ScaledPotentials, ws: _WorkingSet, live: torch.Tensor, eps: float,
                   mode: BatchMode, check: bool) -> Optional[torch.Tensor]:
    """One over-relaxed iteration of the live rows (in place); returns the marginal error
    estimate ``(b,)`` when ``check``. Absorbs and rebuilds ``G`` where needed."""
    zero = st.f.new_zeros(())
    w, lu, lv, G = ws.omega, st.lu, st.lv, st.G
    den = mode.matmul(G, (ws.wb * torch.exp(lv))[:, :, None])[:, :, 0]
    lu_s = torch.where(ws.vx, -torch.log(den), zero)
    lu_n = lu + w * (lu_s - lu)
    den = mode.matmul((ws.wa * torch.exp(lu_n))[:, None, :], G)[:, 0, :]
    lv_s = torch.where(ws.vy, -torch.log(den), zero)
    bad = mode.rows(~(torch.isfinite(lv_s).all(1) & torch.isfinite(lu_s).all(1)))
    if bool(bad.any()):  # a kernel row underflowed: absorb, then a log-domain step
        st.absorb(bad, eps)
        lu, lv = st.lu, st.lv  # relax from the absorbed (zero) log-scalings
        Kw = -ws.C / eps
        fs = softmin_rows(Kw, ws.lb + st.g / eps, eps)
        gs = softmin_cols(Kw, ws.la + fs / eps, eps)
        bm = bad[:, None]
        lu_n = torch.where(bm, torch.where(ws.vx, (fs - st.f) / eps, zero), lu_n)
        lv_s = torch.where(bm, torch.where(ws.vy, (gs - st.g) / eps, zero), lv_s)
        w = torch.where(bm, torch.ones_like(w), w)
    lv_n = lv + w * (lv_s - lv)
    err = (ws.bn * (lv_s - lv).abs()).sum(1) if check else None
    st.lu = torch.where(live[:, None], lu_n, lu)
    st.lv = torch.where(live[:, None], lv_n, lv)
    big = mode.rows(torch.maximum(st.lu.abs().amax(1), st.lv.abs().amax(1)) > _bounds(lu.dtype)[1])
    big = big | bad  # rebuild the kernel of rows that took a log-domain step
    if bool(big.any()):  # absorb those rows; the others' kernel rows are unchanged
        st.absorb(big, eps)
        st.G = _cross_kernel(ws, st, eps)
    return err


def sinkhorn_at_eps(C: torch.Tensor, la: torch.Tensor, lb: torch.Tensor, bn: torch.Tensor,
                    mx: torch.Tensor, my: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
                    row_ok: torch.Tensor, n_start: torch.Tensor, eps: float, tol: float,
                    max_iter: int, relax: float, mode: BatchMode):
    """``OT_eps(a, b)`` from the potentials ``f`` ``(B, N)``, ``g`` ``(B, M)``.

    ``C`` ``(B, N, M)`` cost; ``la`` ``(B, N)``, ``lb`` ``(B, M)`` log-weights; ``bn`` ``(B, M)``
    normalised weights of ``y`` (marginal error ``sum_j bn_j |dlv_j|``); ``mx``, ``my`` masks;
    ``row_ok`` ``(B,)`` rows with mass (the others are left as they are); ``n_start`` ``(B,)``
    iterations already spent (eps-scaling). Over-relaxed by ``relax``; a row whose error more
    than doubles between checks falls back to ``omega = 1``. Returns
    ``(f, g, n_iter (B,), converged (B,))``. A row whose kernel underflows is absorbed and
    takes one log-domain step, its kernel rebuilt (the same in both modes).
    """
    B, dt, dev = f.shape[0], f.dtype, f.device
    n_iter, converged = n_start.clone(), ~row_ok
    out_f, out_g = f.clone(), g.clone()
    rows = torch.nonzero(row_ok).squeeze(1)
    ws = _WorkingSet(C=C, la=la, lb=lb, wa=torch.exp(la), wb=torch.exp(lb), bn=bn, vx=mx, vy=my,
                     pair=mx[:, :, None] & my[:, None, :],
                     omega=torch.full((B, 1), float(relax), dtype=dt, device=dev),
                     err=torch.full((B,), float("inf"), dtype=dt, device=dev)).take(rows)
    st = ScaledPotentials(f=f, lu=torch.zeros_like(f), g=g, lv=torch.zeros_like(g)).take(rows)
    st.G = _cross_kernel(ws, st, eps)
    check_every = 1 if dev.type == "cpu" else 5
    live = torch.ones(rows.numel(), dtype=torch.bool, device=dev)
    it = 0
    while it < max_iter and rows.numel():
        it += 1
        check = (it % check_every == 0) or it == max_iter
        err = _sinkhorn_step(st, ws, live, eps, mode, check)
        if not check:
            continue
        if relax != 1.0:  # over-relaxation safeguard
            ws.omega = torch.where((err > 2.0 * ws.err)[:, None], torch.ones_like(ws.omega),
                                   ws.omega)
        ws.err = torch.where(live, err, ws.err)
        n_iter[rows[live]] = n_start[rows[live]] + it
        live = live & ~(err < tol)
        n_live = int(live.sum())
        if n_live == 0:
            break
        if n_live <= rows.numel() // 2:  # compact: drop finished rows from the working set
            converged[rows[~live]] = True
            out_f[rows], out_g[rows] = st.value(eps)
            keep = torch.nonzero(live).squeeze(1)
            rows, ws, st, live = rows[keep], ws.take(keep), st.take(keep), live[keep]
    converged[rows[~live]] = True
    out_f[rows], out_g[rows] = st.value(eps)
    return out_f, out_g, n_iter, converged


def _self_kernel(K: torch.Tensor, p: torch.Tensor, pair: torch.Tensor, eps: float) -> torch.Tensor:
    """``exp((p_i + p_k - C_ik) / eps)`` ``(B, N, N)`` from ``K = -C / eps``, 0 off ``pair``."""
    arg = K + (p[:, :, None] + p[:, None, :]) / eps
    return torch.where(pair, torch.exp(arg.clamp_(max=_bounds(K.dtype)[0])), K.new_zeros(()))


def solve_self(K: torch.Tensor, lw: torch.Tensor, wn: torch.Tensor, valid: torch.Tensor,
               eps: float, tol: float, max_iter: int, p: Optional[torch.Tensor],
               mode: BatchMode):
    """Symmetric potential of ``OT_eps(w, w)`` by averaged iterations ``p <- (p + T(p)) / 2``.

    ``K = -C / eps`` ``(B, N, N)``, ``lw`` ``(B, N)`` log-weights (``-1e30`` where no mass),
    ``wn`` weights normalised per row (for the marginal error), ``valid`` ``(B, N)`` bool,
    ``p`` a start ``(B, N)`` or None. Returns ``(p, n_iter (B,), converged (B,))``.
    """
    dev = K.device
    zero = K.new_zeros(())
    tau = _bounds(K.dtype)[1]
    pair = valid[:, :, None] & valid[:, None, :]
    w = torch.exp(lw)
    if p is None:
        p = softmin_rows(K, lw, eps)
    st = ScaledPotentials(f=p, lu=torch.zeros_like(p))
    G = _self_kernel(K, st.f, pair, eps)
    live = torch.ones(p.shape[0], dtype=torch.bool, device=dev)
    n_it = torch.zeros(p.shape[0], dtype=torch.long, device=dev)
    for it in range(1, max_iter + 1):
        den = mode.matmul(G, (w * torch.exp(st.lu))[:, :, None])[:, :, 0]
        lt = torch.where(valid, -torch.log(den), zero)
        bad = mode.rows(~torch.isfinite(lt).all(1))
        if bool(bad.any()):  # kernel underflow: absorb, then a log-domain step
            st.absorb(bad, eps)
            lt_log = torch.where(valid, (softmin_rows(K, lw + st.f / eps, eps) - st.f) / eps, zero)
            lt = torch.where(bad[:, None], lt_log, lt)
        err = (wn * (lt - st.lu).abs()).sum(1)
        st.lu = torch.where(live[:, None], 0.5 * (st.lu + lt), st.lu)
        n_it[live] = it
        live = live & ~(err < tol)
        if not bool(live.any()):
            break
        big = bad | mode.rows(st.lu.abs().amax(1) > tau)
        if bool(big.any()):  # absorb those rows; the others' kernel rows are unchanged
            st.absorb(big, eps)
            G = _self_kernel(K, st.f, pair, eps)
    return st.value(eps)[0], n_it, ~live
