"""The eigenspace-residual filter of FINDER, as pure functions on torch tensors.

Shapes: data ``(N, P)``; bases ``(P, r)`` with orthonormal columns; centres ``(P,)``.
A filter is ``(c, W)``: features of ``x`` are ``(x - c) @ W``, ``(N, m)``.

Construction (Murphy et al., arXiv:2510.19917; the authors' MATLAB code, see
:mod:`finder.classifier`): centre on class A's mean ``mu_A``; drop A's top ``M_A``
Karhunen–Loève directions ``V``; in the residual space (``r(x) = (I - V V^T)(x - mu_A)``)
rotate into class B's eigenbasis of its centred residuals and keep ``M_res`` of those
coordinates (ACA-S: smallest B variance, ACA-L: largest).

**The class-mean direction.** B's eigenbasis of its *centred* residuals does not contain the
difference of the class means when B's residuals do not span it (always when ``P`` exceeds
B's sample count, and whenever ``M_res`` truncates): a pure mean shift between the classes
would then be invisible to the filter. The authors' code keeps it — its B basis is the *full*
SVD (``svd(XB)`` of ``ProjectOntoT2.m``, a complete orthonormal basis of the residual space),
and the data it rotates are not centred on B's mean, so the mean difference survives in the
kept coordinates when ``Mres`` covers them. The thin construction here (no ``P x P`` matrix)
adds that direction explicitly: the unit residual mean difference, orthogonalised against the
kept B directions, is appended as one more column whenever it is not (numerically) spanned.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .kl import Moments, kl_basis, kl_basis_from_cov, residual, use_covariance

__all__ = ["BasisA", "Filter", "basis_A", "b_moments", "filter_family", "select_filter",
           "procrustes", "crossfit_features", "MEAN_RTOL"]

#: the mean-difference direction is added when more than this fraction of its norm lies
#: outside the kept B directions
MEAN_RTOL = 1e-6


@dataclass
class BasisA:
    """Class A's KL basis: mean ``mu`` (P,), directions ``V`` (P, r), variances ``lam`` (r,)."""
    mu: torch.Tensor
    V: torch.Tensor
    lam: torch.Tensor


@dataclass
class Filter:
    """B's residual eigenbasis for one truncation ``M_A``: centre ``c = mu_A + mu_B`` (P,),
    B directions ``WB`` (P, r_B) by decreasing B variance ``varB`` (r_B,), and the residual
    class-mean difference ``d`` (P,) (from ``mu_A`` to B's residual mean, orthogonal to V)."""
    c: torch.Tensor
    WB: torch.Tensor
    varB: torch.Tensor
    d: torch.Tensor


def basis_A(XA: torch.Tensor) -> BasisA:
    """KL basis of class A's rows ``(n_A, P)``."""
    mu = XA.mean(0)
    V, lam = kl_basis(XA - mu)
    return BasisA(mu, V, lam)


def _filter(XB: torch.Tensor, A: BasisA, M_A: int) -> Filter:
    V = A.V[:, :M_A]
    RB = residual(XB - A.mu, V)
    mu_B = RB.mean(0)
    W, var = kl_basis(RB - mu_B)
    if W.shape[1]:
        W = residual(W.T, V).T  # remove round-off components along V
    return Filter(A.mu + mu_B, W, var, mu_B)


def _filter_moments(mB: Moments, A: BasisA, M_A: int) -> Filter:
    """As :func:`_filter` from B's moments: B's residual covariance is ``Q C_B Q`` with
    ``Q = I - V V^T`` (same result, no pass over the rows)."""
    V = A.V[:, :M_A]
    C = mB.cov()
    if M_A:
        CV = C @ V
        C = C - V @ CV.T - CV @ V.T + V @ (V.T @ CV) @ V.T
    W, var = kl_basis_from_cov(C)
    if W.shape[1]:
        W = residual(W.T, V).T
    d = residual((mB.mean() - A.mu)[None], V)[0]
    return Filter(A.mu + d, W, var, d)


def filter_family(XA: torch.Tensor, XB: torch.Tensor, grid_A, A: BasisA | None = None,
                  mB: Moments | None = None) -> tuple[dict[int, Filter], BasisA]:
    """Filters ``{M_A: Filter}`` for several truncations, and A's basis. With more B rows
    than features (``mB``: B's moments, computed here if not given) the filters come from
    B's covariance, otherwise from a thin SVD of B's rows."""
    A = basis_A(XA) if A is None else A
    if mB is None and use_covariance(XB.shape[0], XB.shape[1]):
        mB = Moments.of(XB, A.mu)
    if mB is not None:
        return {int(m): _filter_moments(mB, A, int(m)) for m in grid_A}, A
    return {int(m): _filter(XB, A, int(m)) for m in grid_A}, A


def select_filter(f: Filter, m: int, variant: str, mean_direction: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c, W, var)`` keeping ``m`` B directions (``variant`` "aca-s": smallest variance,
    "aca-l": largest), plus the class-mean direction (module docstring) as a last column
    with variance 0 when ``mean_direction`` and it is not spanned. ``W`` is (P, m_eff);
    when the kept directions span every feature, ``W`` is the identity."""
    r = f.WB.shape[1]
    m = min(int(m), r)
    cols = slice(r - m, r) if variant == "aca-s" else slice(0, m)
    W, var = f.WB[:, cols], f.varB[cols]
    if mean_direction or W.shape[1] == 0:
        d = f.d - W @ (W.T @ f.d) if W.shape[1] else f.d
        nd, n0 = torch.linalg.vector_norm(d), torch.linalg.vector_norm(f.d)
        if n0 > 0 and nd > MEAN_RTOL * n0:
            W = torch.cat([W, (d / nd)[:, None]], dim=1)
            var = torch.cat([var, var.new_zeros(1)])
    if W.shape[1] == 0:  # nothing to keep (e.g. identical classes): one null column
        W, var = f.c.new_zeros((f.c.shape[0], 1)), f.c.new_zeros(1)
    elif W.shape[1] == W.shape[0]:
        # nothing filtered: the features are the (centred) inputs themselves rather than an
        # arbitrary rotation of them (the same for rotation-invariant heads; tree heads split
        # along the inputs' own axes); var becomes B's variance along each axis
        var = (W.square() * var).sum(1)
        W = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
    return f.c, W, var


def procrustes(Wk: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``Wk`` (P, a) mapped within its span onto ``W`` (P, b), giving (P, b): eigenvectors are
    defined up to sign and, for close eigenvalues, rotation; this aligns a fold's filter with
    the final one. With ``a < b`` (a fold with fewer samples keeps fewer directions) the
    result has rank ``a``: the fold's features in the final filter's coordinates."""
    u, _, vh = torch.linalg.svd(Wk.T @ W, full_matrices=False)
    return Wk @ (u @ vh)


def b_moments(Xt: torch.Tensor, rows_B: np.ndarray, A: BasisA) -> Moments | None:
    """B's moments about A's mean when B has at least as many rows as features (the
    covariance route), else None."""
    if use_covariance(len(rows_B), Xt.shape[1]):
        return Moments.of(Xt[rows_B], A.mu)
    return None


def crossfit_features(Xt: torch.Tensor, cov_A: np.ndarray, rows_B: np.ndarray,
                      clf_rows: np.ndarray, t_clf: np.ndarray, settings, family: dict,
                      select, folds: int, seed: int, A: BasisA | None = None,
                      mB: Moments | None = None) -> dict:
    """Out-of-fold filter features ``{(M_A, m): (len(clf_rows), m_eff) array}`` of the rows
    ``clf_rows`` (targets ``t_clf`` in {0, 1}) for every ``(M_A, m)`` in ``settings``.

    ``family``: the filters fitted on ``cov_A`` (class A) and ``rows_B`` (class B);
    ``select(filter, m) -> (c, W, var)``. With ``folds >= 2`` each fold of ``clf_rows`` gets
    the filter fitted without its rows (Procrustes-aligned to the full one), so the head
    trains on features distributed like those of unseen data (in-sample residual coordinates
    are biased: a class has artificially small variance along its own fitted least-variance
    directions). ``folds < 2``: in-sample features. ``A``, ``mB``: A's basis and B's
    moments (:func:`b_moments`) of the full fit, if the caller has them.
    """
    from sklearn.model_selection import StratifiedKFold

    k = min(int(folds or 0), int(np.bincount(t_clf, minlength=2).min()))
    full = {(M_A, m): select(family[M_A], m)[:2] for M_A, m in settings}
    if k < 2:
        X = Xt[clf_rows]
        return {s: ((X - c) @ W).cpu().numpy() for s, (c, W) in full.items()}
    out = {s: np.empty((len(clf_rows), W.shape[1])) for s, (_, W) in full.items()}
    grid_A = sorted({M_A for M_A, _ in settings})
    A_full = basis_A(Xt[cov_A]) if A is None else A
    mB = b_moments(Xt, rows_B, A_full) if mB is None else mB
    skf = StratifiedKFold(k, shuffle=True, random_state=seed)
    for _, te in skf.split(clf_rows, t_clf):
        held = clf_rows[te]
        A_k = np.setdiff1d(cov_A, held, assume_unique=True)
        B_k = np.setdiff1d(rows_B, held, assume_unique=True)
        fam_k = None
        if len(A_k) >= 2 and len(B_k) >= 1:
            # with the balanced split no head row estimates A's basis: reuse it
            A = A_full if len(A_k) == len(cov_A) else basis_A(Xt[A_k])
            mB_k = None if mB is None else mB.minus(
                Moments.of(Xt[np.intersect1d(rows_B, held, assume_unique=True)], A_full.mu))
            fam_k = filter_family(Xt[A_k], Xt[B_k], grid_A, A, mB_k)[0]
        Xh = Xt[held]
        for (M_A, m), (c, W) in full.items():
            if fam_k is not None:  # the fold may keep fewer directions: a partial isometry
                ck, Wk, _ = select(fam_k[M_A], m)
                c, W = ck, procrustes(Wk, W)
            out[M_A, m][te] = ((Xh - c) @ W).cpu().numpy()
    return out
