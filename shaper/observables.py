"""SHAPER observables: parametric manifolds of energy distributions with differentiable samplers.

An :class:`Observable` is a dict of constrained parameters (each a tensor with a leading
batch axis ``B``, one row per jet) and a sampler ``params -> (points (B, K, 2), weights (B, K))``
that turns them into a weighted point cloud in the jet's centred (y, phi) frame,
differentiably. Its value on a jet is the smallest EMD between the jet and the manifold.
Single-shape built-ins carry their nested :class:`~shaper.family.Family`.

Shapes with extent are represented by **deterministic quadrature** (see :mod:`shaper.quadrature`):
rings by ``K`` equally spaced angles, disks by a sunflower lattice, ellipses by the affine image
of that lattice, with ``K = n_samples`` nodes per shape. The loss is then smooth in the
parameters and fits are reproducible.

Built-ins (names as in the SHAPER paper; :attr:`Observable.name` returns the string
:func:`from_name` parses):

===========================  =======================================================
``nsubjettiness(n)``          ``centers (n, 2)``, ``weights (n,)`` simplex
``ringiness(n)``              + ``radii (n,)``  (uniform on circles)
``diskiness(n)``              + ``radii (n,)``  (uniform on disks)
``ellipsiness(n)``            + ``semi_axes (n, 2)``, ``angles (n,)`` (period pi)
``point_ringiness(n)`` etc.   prongs with their own ring/disk/ellipse; ``weights (2n,)``:
                              first the n points, then the n shapes
``isotropy()``                no parameters: uniform on the disk of radius R at the axis
``with_pileup(obs)``          obs's parameters + ``pileup_fraction ()`` in [0, 1]
``obs_a + obs_b``             both parameter sets, prefixed ``"<name>."``, + ``mixture (2,)``
===========================  =======================================================

A user-defined observable is ``Observable(name, specs, sampler)``; see :class:`Observable`.
"""
from __future__ import annotations

import inspect
import math
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

from physkit.angles import wrap_angle, wrap_yphi
from physkit.flow.constraints import Angle, Box, Constraint, Free, Positive, Simplex
from physkit.simd import aligned

from .family import ISOTROPY, PILEUP, Family
from .prong_derivatives import prong_derivatives
from .quadrature import disk_nodes, ring_nodes

Params = Dict[str, torch.Tensor]
Sampler = Callable[[Params, int, float], Tuple[torch.Tensor, torch.Tensor]]

#: smallest initial radius / semi-axis (in units of y, phi)
MIN_INIT_RADIUS = 1e-3
#: the "wide" starts: radius of the wide shape (units of R) and its share of its prong's energy
#: (point + shape families; a shape-only prong is all shape)
WIDE_RADIUS = 0.6
WIDE_FRACTION = 0.3
#: weight of the wide, light shape around the hardest prong (the second "wide" start)
LIGHT_FRACTION = 0.1
#: radius of the narrow start's hardest shape (units of R): the point-like limit of the shape
NARROW_RADIUS = 0.02


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of an observable.

    shape : per-jet shape (the tensor is ``(B, *shape)``)
    constraint : projection applied by the flow (``Free``, ``Positive``, ``Simplex``, ``Angle``, ``Box``)
    kind : ``"position"`` (last axis is (y, phi), shifted back to the input frame when reported),
           ``"weight"``, ``"length"``, ``"angle"`` or ``"other"``
    default : fill value when the observable has no initialiser for it
    """

    shape: Tuple[int, ...]
    constraint: Constraint
    kind: str = "other"
    default: float = 0.0


class Observable:
    """A manifold of energy distributions with a differentiable sampler.

    Parameters
    ----------
    name : str
        Name used as the key in :class:`shaper.Results` (e.g. ``"3-subjettiness"``).
    specs : dict[str, ParamSpec]
        Parameter names, per-jet shapes and constraints.
    sampler : callable ``(params, n_samples, R) -> (points (B, K, 2), weights (B, K))``
        Differentiable in ``params``; ``n_samples`` is the number of quadrature nodes per
        extended shape; ``R`` the jet radius. Weights must sum to 1 per row. A sampler that
        also takes a keyword ``batch`` receives :meth:`sample`'s ``batch`` (needed by shapes
        without parameters, whose batch size cannot be read off ``params``).
    init : callable ``(seeds: KtSeeds, R) -> params``, optional
        Initial parameters from exclusive-kT seeds; default fills every parameter with its
        spec's ``default`` (a Simplex parameter starts uniform).
    drawer : callable ``(ax, params_row: dict[str, numpy], R) -> None``, optional
        Draws one jet's fitted shape (in the coordinates of ``params_row``).
    n_points : int, optional
        Set only for pure point manifolds (n-subjettiness): enables the exact Lloyd path.
    family : :class:`~shaper.family.Family`, optional
        Nested family (smaller members seed this one in :class:`shaper.Shaper`); a
        ``(kind, n)`` pair of earlier versions is converted.
    starts : callable ``(seeds, R) -> list[params]``, optional
        Further, diverse starting points for a multi-start fit (e.g. a wide disk around the
        hardest prong), in the format of ``init``; default none.
    jacobian : callable ``(params, n_samples, R, names) -> (B, K, 2, P) or None``, optional
        Analytic ``d points / d params[names]`` (each parameter's per-jet entries flattened,
        in the order of ``names``); None (or a None result): the exact flow takes it from
        autograd through ``sampler``. Built-in prongs provide it.
    mass_vjp : callable ``(params, n_samples, R, v (B, K), names) -> list[Tensor] or None``,
        optional
        Analytic ``sum_k v_k d weights_k / d params[name]`` per name (shaped like the
        parameter); None: autograd through ``sampler``.

    ``affine_nodes`` (attribute, default False): set by the built-in 1-ringiness and
    1-diskiness, whose nodes are ``centers + radii * u_k`` with a fixed unit pattern and fixed
    masses; their exact flow on CPU then runs in the compiled engine of
    :mod:`shaper.affine_flow`.
    """

    affine_nodes: bool = False

    def __init__(self, name: str, specs: Mapping[str, ParamSpec], sampler: Sampler, *,
                 init: Optional[Callable] = None, drawer: Optional[Callable] = None,
                 n_points: Optional[int] = None,
                 family: Union[Family, Tuple[str, int], None] = None,
                 starts: Optional[Callable] = None, jacobian: Optional[Callable] = None,
                 mass_vjp: Optional[Callable] = None):
        self.name = name
        self._jacobian = jacobian
        self._mass_vjp = mass_vjp
        self.specs = dict(specs)
        self._sampler = sampler
        self._sampler_takes_batch = _takes_keyword(sampler, "batch")
        self._init = init
        self._starts = starts
        self._drawer = drawer
        self.n_points = n_points
        self.family: Optional[Family] = None if family is None else Family.coerce(family)

    def __repr__(self) -> str:
        return f"Observable({self.name!r}, params={list(self.specs)})"

    @property
    def constraints(self) -> Dict[str, Constraint]:
        return {k: s.constraint for k, s in self.specs.items()}

    def sample(self, params: Params, n_samples: int = 32, R: float = 0.8, *,
               batch: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weighted point cloud ``(points (B, K, 2), weights (B, K))`` of the shapes ``params``
        (``(B, ...)`` each), ``n_samples`` nodes per extended shape, jet radius ``R``.

        ``batch``: a tensor ``(B, ...)`` (e.g. the jets' weights) that gives shapes without
        parameters (isotropy) their batch size, dtype and device; default: the first parameter.
        """
        if "_batch" in params:  # the side channel of earlier versions
            warnings.warn("params['_batch'] is deprecated: pass Observable.sample(..., batch=)",
                          DeprecationWarning, stacklevel=2)
            params = dict(params)
            legacy = params.pop("_batch")
            batch = legacy if batch is None else batch
        if self._sampler_takes_batch:
            return self._sampler(params, int(n_samples), float(R), batch=batch)
        return self._sampler(params, int(n_samples), float(R))

    def node_jacobian(self, params: Params, n_samples: int, R: float, names: List[str]
                      ) -> Optional[torch.Tensor]:
        """Analytic ``d points / d params[names]`` ``(B, K, 2, P)`` (see ``jacobian`` in the
        class docstring), or None when the observable does not provide it for ``names``."""
        if self._jacobian is None:
            return None
        return self._jacobian(params, int(n_samples), float(R), list(names))

    def mass_grads(self, params: Params, n_samples: int, R: float, v: torch.Tensor,
                   names: List[str]) -> Optional[List[torch.Tensor]]:
        """Analytic ``sum_k v_k d weights_k / d params[name]`` for each of ``names``
        (``v (B, K)``), or None when the observable does not provide it."""
        if self._mass_vjp is None:
            return None
        return self._mass_vjp(params, int(n_samples), float(R), v, list(names))

    def default_params(self, b: int, *, dtype=torch.float64, device=None) -> Params:
        out = {}
        for k, s in self.specs.items():
            if isinstance(s.constraint, Simplex):
                t = torch.full((b, *s.shape), 1.0 / s.shape[-1], dtype=dtype, device=device)
            else:
                t = torch.full((b, *s.shape), float(s.default), dtype=dtype, device=device)
            out[k] = t
        return out

    def init(self, seeds, R: float = 0.8) -> Params:
        """Initial parameters ``dict[str, (B, ...)]`` from :class:`shaper.seeds.KtSeeds` (centred frame)."""
        if self._init is None:
            return self.default_params(len(seeds), device=seeds.jets.device)
        return self._init(seeds, R)

    def starts(self, seeds, R: float = 0.8) -> List[Params]:
        """Further starting parameter sets ``[dict[str, (B, ...)]]`` from the seeds (see
        ``starts`` in the class docstring); empty when the observable defines none."""
        return [] if self._starts is None else list(self._starts(seeds, R))

    def draw(self, ax, params_row: Mapping, R: float = 0.8) -> None:
        """Draw one jet's shape (``params_row``: name -> numpy array without batch axis)."""
        if self._drawer is not None:
            self._drawer(ax, params_row, R)

    def __add__(self, other: "Observable") -> "Observable":
        return mixture(self, other)


# ------------------------------------------------------------------ building blocks

def _takes_keyword(fn: Callable, name: str) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _place(centers: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """``centers (B, n, 2)`` + ``local (B, n, K, 2)`` -> ``(B, n*K, 2)``."""
    b, n, _ = centers.shape
    return (centers[:, :, None, :] + local).reshape(b, -1, 2)


def _spread(weights: torch.Tensor, k: int) -> torch.Tensor:
    """``weights (B, n)`` -> ``(B, n*k)`` with each weight split evenly over its ``k`` nodes."""
    b, n = weights.shape
    return (weights[:, :, None] / k).expand(b, n, k).reshape(b, n * k)


def _shape_local(kind: str, params: Params, k: int) -> torch.Tensor:
    """Quadrature nodes of each prong's shape relative to its centre, ``(B, n, K, 2)``."""
    c = params["centers"]
    if kind == "ring":
        u = ring_nodes(k, dtype=c.dtype, device=c.device)
        return params["radii"][:, :, None, None] * u
    u = disk_nodes(k, dtype=c.dtype, device=c.device)
    if kind == "disk":
        return params["radii"][:, :, None, None] * u
    # ellipse: rotate(angle) @ diag(a, b) @ u
    a = params["semi_axes"]
    lx = a[:, :, None, 0:1] * u[..., 0:1]
    ly = a[:, :, None, 1:2] * u[..., 1:2]
    ct = aligned(torch.cos, params["angles"])[:, :, None, None]
    st = aligned(torch.sin, params["angles"])[:, :, None, None]
    return torch.cat([lx * ct - ly * st, lx * st + ly * ct], dim=-1)


def _shape_specs(kind: str, n: int) -> Dict[str, ParamSpec]:
    if kind in ("ring", "disk"):
        return {"radii": ParamSpec((n,), Positive(), "length")}
    return {"semi_axes": ParamSpec((n, 2), Positive(), "length"),
            "angles": ParamSpec((n,), Angle(math.pi), "angle")}


def _assignment_stats(seeds, centers: torch.Tensor):
    """Per-prong mean distance ``(B, n)``, covariance ``(B, n, 2, 2)`` and mass ``(B, n)``
    of the particles nearest to each centre (pT-weighted)."""
    jets = seeds.jets
    z = jets.weights().to(centers.dtype)
    p = jets.points().to(centers.dtype)
    d = wrap_yphi(p[:, :, None, :] - centers[:, None, :, :])  # (B, M, n, 2)
    dist = d.norm(dim=-1)
    near = torch.nn.functional.one_hot(dist.argmin(dim=-1), centers.shape[1]).to(z.dtype)
    zw = z[:, :, None] * near  # (B, M, n)
    mass = zw.sum(dim=1)
    safe = torch.where(mass > 0, mass, torch.ones_like(mass))
    mean_d = (zw * dist).sum(dim=1) / safe
    cov = torch.einsum("bmn,bmni,bmnj->bnij", zw, d, d) / safe[..., None, None]
    return mean_d, cov, mass


def _floor(r: torch.Tensor) -> torch.Tensor:
    """Initial radii: at least MIN_INIT_RADIUS, except exactly 0 where the particles coincide."""
    return torch.where(r > 1e-7, r.clamp_min(MIN_INIT_RADIUS), torch.zeros_like(r))


def _prong_init(kind: str, n: int, with_points: bool):
    """kT initialiser for ring/disk/ellipse prongs (optionally with central points)."""

    def init(seeds, R):
        centers, w = seeds.subjets(n)
        mean_d, cov, _ = _assignment_stats(seeds, centers)
        few = (seeds.jets.n_particles() <= n)[:, None]  # these jets are fitted exactly by points
        out = {"centers": centers.clone()}
        if kind in ("ring", "disk"):
            r = mean_d * (1.5 if kind == "disk" else 1.0)
            out["radii"] = torch.where(few, torch.zeros_like(r), _floor(r))
        else:
            evals, evecs = torch.linalg.eigh(cov)  # ascending
            ax = 2.0 * evals.clamp_min(0).sqrt().flip(-1)  # (major, minor); uniform ellipse var = a^2/4
            ax = torch.where(few[..., None], torch.zeros_like(ax), _floor(ax))
            major = evecs[..., :, 1]
            ang = aligned(torch.atan2, major[..., 1], major[..., 0])
            out["semi_axes"] = ax
            out["angles"] = wrap_angle(ang, math.pi)
        if with_points:
            # half of each subjet's energy in the point, half in its shape (none in the shape
            # when the jet has <= n particles)
            half = torch.where(few, w, 0.5 * w)
            out["weights"] = torch.cat([half, w - half], dim=1)
        else:
            out["weights"] = w.clone()
        return out

    return init


def _prong_starts(kind: str, n: int, with_points: bool):
    """Diverse starts for ring/disk/ellipse prongs, from the kT initialisation: (1) the hardest
    prong's shape made wide (radius ``WIDE_RADIUS * R``; a ``WIDE_FRACTION`` share of the
    prong's energy when the prong has a point); (2) for ``n >= 2``, a wide, light shape around
    the hardest prong: the last prong moves onto the hardest one's centre with a wide shape of
    weight ``LIGHT_FRACTION`` (its point empty), the other weights scaled down to make room;
    (3) the hardest prong's shape made narrow (radius ``NARROW_RADIUS * R``: the shape's
    point-like limit on the hardest subjet, a basin the wide starts do not reach)."""
    init = _prong_init(kind, n, with_points)
    width = "radii" if kind in ("ring", "disk") else "semi_axes"

    def starts(seeds, R):
        base = init(seeds, R)
        wide = {k: v.clone() for k, v in base.items()}
        wide[width][:, 0] = WIDE_RADIUS * R
        if with_points:
            w = wide["weights"]
            total = w[:, 0] + w[:, n]
            w[:, 0], w[:, n] = (1 - WIDE_FRACTION) * total, WIDE_FRACTION * total
        narrow = {k: v.clone() for k, v in base.items()}
        narrow[width][:, 0] = NARROW_RADIUS * R
        out = [wide, narrow]
        if n >= 2:
            light = {k: v.clone() for k, v in base.items()}
            light["centers"][:, -1] = light["centers"][:, 0]
            light[width][:, -1] = WIDE_RADIUS * R
            w = light["weights"]
            if with_points:
                w[:, n - 1] = 0.0
            w[:, -1] = 0.0
            w *= (1 - LIGHT_FRACTION) / w.sum(1, keepdim=True).clamp_min(1e-300)
            w[:, -1] = LIGHT_FRACTION
            out.append(light)
        return out

    return starts


# ------------------------------------------------------------------ drawing

def _draw_points(ax, c, w, color="purple"):
    import numpy as np
    w = np.asarray(w)
    ax.scatter(c[:, 0], c[:, 1], marker="x", s=50 + 400 * w, color=color, lw=2.5, zorder=15)


def _draw_shapes(ax, kind, p, color="purple", alpha=0.25):
    import numpy as np
    from matplotlib.patches import Circle, Ellipse

    c = np.asarray(p["centers"])
    for j in range(c.shape[0]):
        if kind in ("ring", "disk"):
            r = float(p["radii"][j])
            fill = kind == "disk"
            ax.add_patch(Circle(c[j], r, fill=fill, facecolor=color, alpha=alpha if fill else 0.8,
                                edgecolor=color, lw=2, zorder=11))
        else:
            a, b = (float(v) for v in p["semi_axes"][j])
            ax.add_patch(Ellipse(c[j], 2 * a, 2 * b, angle=math.degrees(float(p["angles"][j])),
                                 facecolor=color, alpha=alpha, edgecolor=color, lw=2, zorder=11))


# ------------------------------------------------------------------ constructors

def nsubjettiness(n: int) -> Observable:
    """n points with weights on the simplex; value = tau_n at its minimum over axes."""
    n = _check_n(n)

    def sampler(params, k, R):
        return params["centers"], params["weights"]

    def init(seeds, R):
        c, w = seeds.subjets(n)
        return {"centers": c.clone(), "weights": w.clone()}

    def drawer(ax, p, R):
        _draw_points(ax, p["centers"], p["weights"])

    specs = {"centers": ParamSpec((n, 2), Free(), "position"),
             "weights": ParamSpec((n,), Simplex(), "weight")}
    return Observable(f"{n}-subjettiness", specs, sampler, init=init, drawer=drawer,
                      n_points=n, family=Family("subjettiness", n))


def _prongs(kind: str, n: int, with_points: bool) -> Observable:
    n = _check_n(n)
    word = {"ring": "ringiness", "disk": "diskiness", "ellipse": "ellipsiness"}[kind]
    name = f"{n}-point-{word}" if with_points else f"{n}-{word}"

    def sampler(params, k, R):
        c = params["centers"]
        pts = _place(c, _shape_local(kind, params, k))
        w = params["weights"]
        if with_points:
            return torch.cat([c, pts], dim=1), torch.cat([w[:, :n], _spread(w[:, n:], k)], dim=1)
        return pts, _spread(w, k)

    def drawer(ax, p, R):
        _draw_shapes(ax, kind, p)
        if with_points:
            _draw_points(ax, p["centers"], p["weights"][:n])

    specs = {"centers": ParamSpec((n, 2), Free(), "position"),
             "weights": ParamSpec((2 * n if with_points else n,), Simplex(), "weight")}
    specs.update(_shape_specs(kind, n))
    jacobian, mass_vjp = prong_derivatives(kind, n, with_points)
    obs = Observable(name, specs, sampler, init=_prong_init(kind, n, with_points),
                     drawer=drawer, family=Family(("point-" if with_points else "") + word, n),
                     starts=_prong_starts(kind, n, with_points), jacobian=jacobian,
                     mass_vjp=mass_vjp)
    obs.affine_nodes = kind in ("ring", "disk") and n == 1 and not with_points
    return obs


def ringiness(n: int) -> Observable:
    """n rings (centre, radius) with weights on the simplex; K equally spaced nodes per ring."""
    return _prongs("ring", n, False)


def diskiness(n: int) -> Observable:
    """n uniform disks (centre, radius), weights on the simplex; sunflower-lattice nodes."""
    return _prongs("disk", n, False)


def ellipsiness(n: int) -> Observable:
    """n uniform ellipses (centre, two semi-axes, angle mod pi), weights on the simplex."""
    return _prongs("ellipse", n, False)


def point_ringiness(n: int) -> Observable:
    """n prongs, each a point plus a ring around it; weights on the 2n-simplex."""
    return _prongs("ring", n, True)


def point_diskiness(n: int) -> Observable:
    """n prongs, each a point plus a uniform disk around it; weights on the 2n-simplex."""
    return _prongs("disk", n, True)


def point_ellipsiness(n: int) -> Observable:
    """n prongs, each a point plus a uniform ellipse around it; weights on the 2n-simplex."""
    return _prongs("ellipse", n, True)


def _like(params: Params, batch: Optional[torch.Tensor]) -> torch.Tensor:
    """A tensor whose leading axis is the batch: ``batch`` when given, else the first parameter."""
    if batch is not None:
        return batch
    for v in params.values():
        if isinstance(v, torch.Tensor):
            return v
    raise ValueError("a parameterless observable needs Observable.sample(..., batch=) "
                     "to know the batch size")


def _iso_nodes(params: Params, k: int, R: float, like: torch.Tensor):
    b = like.shape[0]
    u = disk_nodes(k, dtype=like.dtype, device=like.device) * R
    return u.expand(b, k, 2), torch.full((b, k), 1.0 / k, dtype=like.dtype, device=like.device)


def isotropy() -> Observable:
    """Uniform energy on the disk of radius R around the jet axis (no parameters).

    Sampled by a sunflower lattice of ``n_samples`` nodes (times 4: the whole jet is one shape).
    """

    def sampler(params, k, R, batch=None):
        return _iso_nodes(params, 4 * k, R, _like(params, batch))

    def drawer(ax, p, R):
        from matplotlib.patches import Circle
        ax.add_patch(Circle(tuple(p.get("_axis", (0.0, 0.0))), R, facecolor="purple",
                            alpha=0.15, edgecolor="purple", lw=2, zorder=11))

    return Observable("isotropy", {}, sampler, drawer=drawer, family=Family("isotropy", 0))


def with_pileup(obs: Observable) -> Observable:
    """``obs`` mixed with a uniform floor on the jet disk (radius R at the axis).

    Parameters: ``obs``'s (names kept) plus ``pileup_fraction ()`` in [0, 1] (the 1-simplex
    (1 - f, f)). The floor uses ``4 * n_samples`` sunflower nodes.
    """
    if "pileup_fraction" in obs.specs:
        raise ValueError(f"{obs.name} already has a pileup component")

    def sampler(params, k, R, batch=None):
        pts, w = obs.sample(params, k, R, batch=batch)
        f = params["pileup_fraction"]
        fp, fw = _iso_nodes(params, 4 * k, R, pts)
        return (torch.cat([pts, fp.to(pts.dtype)], dim=1),
                torch.cat([w * (1 - f)[:, None], fw * f[:, None]], dim=1))

    def init(seeds, R):
        p = obs.init(seeds, R)
        like = next(iter(p.values())) if p else seeds.jets.pt
        p["pileup_fraction"] = torch.zeros(len(seeds), dtype=torch.float64, device=like.device)
        return p

    def starts(seeds, R):
        out = obs.starts(seeds, R)
        for p in out:
            p["pileup_fraction"] = torch.zeros(len(seeds), dtype=torch.float64,
                                               device=seeds.jets.device)
        return out

    def drawer(ax, p, R):
        from matplotlib.patches import Circle
        ax.add_patch(Circle(tuple(p.get("_axis", (0.0, 0.0))), R, fill=False, ls="--",
                            edgecolor="gray", lw=1.5, zorder=10))
        obs.draw(ax, p, R)

    specs = dict(obs.specs)
    specs["pileup_fraction"] = ParamSpec((), Box(0.0, 1.0), "weight")
    fam = None if obs.family is None else obs.family.with_pileup()
    return Observable(obs.name + PILEUP, specs, sampler, init=init, drawer=drawer, family=fam,
                      starts=starts)


def mixture(a: Observable, b: Observable) -> Observable:
    """``a + b``: mixture ``(1 - m) a + m b`` with ``mixture (2,)`` on the simplex.

    Parameter names are prefixed with each part's name (``"<a.name>.centers"``, ...); when both
    names are equal the second gets a ``"#2"`` suffix.
    """
    na, nb = a.name, b.name
    if na == nb:
        nb = nb + "#2"
    pa = {f"{na}.{k}": k for k in a.specs}
    pb = {f"{nb}.{k}": k for k in b.specs}

    def sampler(params, k, R, batch=None):
        like = _like(params, batch)
        xa, wa = a.sample({v: params[k] for k, v in pa.items()}, k, R, batch=like)
        xb, wb = b.sample({v: params[k] for k, v in pb.items()}, k, R, batch=like)
        m = params["mixture"]
        return torch.cat([xa, xb.to(xa.dtype)], 1), torch.cat([wa * m[:, :1], wb * m[:, 1:]], 1)

    def init(seeds, R):
        qa, qb = a.init(seeds, R), b.init(seeds, R)
        out = {f"{na}.{k}": v for k, v in qa.items()}
        out.update({f"{nb}.{k}": v for k, v in qb.items()})
        out["mixture"] = torch.full((len(seeds), 2), 0.5, dtype=torch.float64,
                                    device=seeds.jets.device)
        return out

    def drawer(ax, p, R):
        a.draw(ax, {v: p[k] for k, v in pa.items()} | {"_axis": p.get("_axis", (0.0, 0.0))}, R)
        b.draw(ax, {v: p[k] for k, v in pb.items()} | {"_axis": p.get("_axis", (0.0, 0.0))}, R)

    specs = {k: a.specs[v] for k, v in pa.items()}
    specs.update({k: b.specs[v] for k, v in pb.items()})
    specs["mixture"] = ParamSpec((2,), Simplex(), "weight")
    return Observable(f"{a.name}+{b.name}", specs, sampler, init=init, drawer=drawer)


def _check_n(n) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


#: builders of the ``n``-prong kinds (:data:`shaper.family.KINDS`)
_BUILDERS = {
    "subjettiness": nsubjettiness,
    "ringiness": ringiness,
    "diskiness": diskiness,
    "ellipsiness": ellipsiness,
    "point-ringiness": point_ringiness,
    "point-diskiness": point_diskiness,
    "point-ellipsiness": point_ellipsiness,
}


def from_family(family: Family) -> Observable:
    """The built-in observable of a family member, e.g. ``Family("diskiness", 2, pileup=True)``
    -> ``2-diskiness+pileup``."""
    if family.kind == ISOTROPY:
        obs = isotropy()
    elif family.kind in _BUILDERS:
        obs = _BUILDERS[family.kind](family.n)
    else:
        raise ValueError(f"no built-in observable of kind {family.kind!r}")
    return with_pileup(obs) if family.pileup else obs


def _one(part: str) -> Observable:
    family = Family.from_name(part)
    if family is None:
        raise ValueError(f"unknown observable {part!r}; expected e.g. '3-subjettiness', "
                         f"'2-diskiness', '2-point-ellipsiness', 'isotropy', '<any>+pileup'")
    return from_family(family)


#: the paper's spellings of the point+shape kinds, e.g. "2-(point+disk)iness"
_PAPER_KINDS = re.compile(r"\((?:point\+(ring|disk|ellipse)|(ring|disk|ellipse)\+point)\)iness")
_SHAPE_KINDS = {"ring": "ringiness", "disk": "diskiness", "ellipse": "ellipsiness"}


def canonical_name(name: str) -> str:
    """The spelling :func:`from_name` parses: lower case, no whitespace, the paper's
    ``"n-(point+disk)iness"`` / ``"n-(disk+point)iness"`` as ``"n-point-diskiness"``,
    ``"-plus-pileup"`` as ``"+pileup"``. pyshaper's names (``"3-Subjettiness"``,
    ``"2-Point-Diskiness"``, ``"Isotropy"``) become physkit's."""
    s = "".join(str(name).split()).lower().replace("-plus-pileup", "+pileup")
    return _PAPER_KINDS.sub(lambda m: "point-" + _SHAPE_KINDS[m.group(1) or m.group(2)], s)


def from_name(name: str) -> Observable:
    """Observable from its name: ``"3-subjettiness"``, ``"2-ringiness"``, ``"2-diskiness"``,
    ``"1-ellipsiness"``, ``"2-point-ringiness"``, ``"2-point-diskiness"``,
    ``"2-point-ellipsiness"``, ``"isotropy"``, mixtures ``"a+b"`` and ``"<any>+pileup"``.

    Case-insensitive; pyshaper's and the paper's spellings are accepted
    (:func:`canonical_name`). The observable keeps ``name`` as given (less surrounding
    whitespace), so results are keyed by the caller's spelling."""
    canon = canonical_name(name)
    parts = [p.strip() for p in canon.split("+")]
    pileup = parts[-1] == "pileup"
    if pileup:
        parts = parts[:-1]
    if not parts or any(p == "pileup" for p in parts):
        raise ValueError(f"bad observable name {name!r}")
    obs = _one(parts[0])
    for p in parts[1:]:
        obs = obs + _one(p)
    obs = with_pileup(obs) if pileup else obs
    obs.name = str(name).strip()
    return obs
