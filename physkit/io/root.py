"""ROOT files: a particle collection in a TTree, read with ``uproot`` (the ``root`` extra).

One row per tree entry. The particles are a collection of list branches (jagged, e.g.
NanoAOD's ``PFCands_pt``, or fixed-size arrays ``float[M]`` zero-padded like LHCO's
columns), one branch per coordinate, sharing a prefix that ends in ``_``, ``.`` or ``/``
(or none). Coordinates are matched case-insensitively (Delphes' ``Particle.PT``):

* ``pt, eta, phi`` with optional ``mass`` / ``m`` or ``e`` / ``energy``;
* ``px, py, pz`` with ``e`` / ``energy``;
* ``pt, y`` (or ``rapidity``), ``phi`` (physkit's convention: ``y`` is the rapidity).

They are converted to (pT, y, phi) with the rapidity of the four-momentum when a mass or
an energy is given (``y = eta`` without): (pt, eta, phi[, mass]) directly
(:func:`physkit.kinematics.rapidity_from_pt_eta_mass`), other sets through ``vector``
(:func:`physkit.records.ptyphi`). Blocks are float64.

Options (``read_events("f.root", tree=..., ...)``; every CLI command takes them too):

``tree``
    the TTree's name (default: the first tree that holds one particle collection);
``particles``
    the collection's branch prefix (``"PFCands_"``) or a mapping coordinate -> branch
    (``{"pt": "pfc_pt", "eta": "pfc_eta", "phi": "pfc_phi"}``; as text
    ``"pt=pfc_pt,eta=pfc_eta,phi=pfc_phi"``). Default: the tree's only collection, or
    among several the one whose prefix names particles (``PFCands``, ``Particle``,
    ``part``, ``constituents``, ...); otherwise the error lists the candidates;
``labels``
    a scalar integer branch of labels (default: ``labels``, ``label``,
    ``is_signal_new`` or ``is_signal`` when present);
``level``
    ``"event"`` (default: entries are whole events, :attr:`RootReader.event_level`, to be
    clustered into jets before any jet observable) or ``"jet"`` (each entry is one jet,
    e.g. JetClass files).

Only the entries ``[start, stop)`` are read (uproot reads the baskets that hold them).
Messages name the file, the tree and branches as ``dataset 'TREE/PREFIX{pt,eta,phi}'``,
and the entry as ``event N``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from ..errors import EventFileError
from ..events import pad_jagged
from ..kinematics import rapidity_from_pt_eta_mass
from .reader import EventBlock, EventReader, as_labels, event_range

__all__ = ["RootReader", "ROOT", "RootTree", "parse_particles"]

#: coordinate names, longest first (so that ``energy`` is not read as ``y``)
_COORDS = ("rapidity", "energy", "mass", "eta", "phi", "px", "py", "pz", "pt", "e", "m", "y")
#: complete coordinate sets, in order of preference, each with optional extras
_SETS = ((("pt", "eta", "phi"), ("mass", "m", "e", "energy")),
         (("px", "py", "pz", "e"), ()), (("px", "py", "pz", "energy"), ()),
         (("pt", "y", "phi"), ()), (("pt", "rapidity", "phi"), ()))
#: prefixes (lower case, separators stripped) that name a particle collection
_PARTICLE_NAMES = {"pfcands", "pfcand", "pfcandidates", "particle", "particles", "part",
                   "parts", "constituents", "constituent", "cands", "candidates", "eflow",
                   "pf", "tower", "towers", ""}
_LABEL_BRANCHES = ("labels", "label", "is_signal_new", "is_signal")
_LEVELS = ("event", "jet")


def _root_module():
    try:
        import uproot
    except ImportError:  # pragma: no cover - the root extra is installed by make test
        raise EventFileError("reading ROOT files needs uproot: pip install 'physkit[root]'"
                             ) from None
    return uproot


class RootTree(NamedTuple):
    """A TTree of an open ROOT file and its name (the container's candidate)."""

    name: str
    tree: Any


class RootContainer:
    """ROOT files (recognised by their ``root`` magic bytes); candidates: the TTrees."""

    catch_all = False

    def recognises(self, path: str) -> bool:
        try:
            with open(path, "rb") as fh:
                return fh.read(4) == b"root"
        except OSError:
            return False

    @contextmanager
    def open(self, path: str) -> Iterator[Any]:
        uproot = _root_module()
        try:
            f = uproot.open(path)
        except Exception as exc:
            raise EventFileError(f"not a readable ROOT file ({exc})", path) from None
        with f:
            yield f

    def candidates(self, f: Any, path: str) -> Iterator[RootTree]:
        try:
            names = f.keys(filter_classname="TTree", cycle=False, recursive=True)
        except Exception as exc:
            raise EventFileError(f"unreadable ROOT directory ({exc})", path) from None
        for name in names:
            yield RootTree(name, f[name])

    def unrecognised(self, f: Any, path: str) -> EventFileError:
        trees = {t.name: sorted(n for n, _ in _branches(t.tree))[:12]
                 for t in self.candidates(f, path)}
        if not trees:
            return EventFileError(f"no TTree in the file (keys: {sorted(f.keys())})", path)
        return EventFileError(
            f"no TTree with a particle collection (list branches PREFIX + pt/eta/phi[/mass] "
            f"or px/py/pz/E) matches; trees and branches: {trees}; name them with "
            f"tree=... and particles='PREFIX' or particles='pt=BRANCH,eta=BRANCH,phi=BRANCH' "
            f"(CLI: --tree, --particles)", path)


ROOT = RootContainer()


def parse_particles(spec: str | Mapping[str, str] | None) -> str | dict[str, str] | None:
    """The ``particles`` option: None, a prefix, or coordinate -> branch (from a mapping or
    ``"pt=A,eta=B,phi=C"`` text); coordinates lower-cased and checked."""
    if spec is None:
        return None
    if isinstance(spec, str) and "=" not in spec:
        return spec
    items = spec.items() if isinstance(spec, Mapping) else (
        part.split("=", 1) for part in str(spec).split(",") if part.strip())
    out = {}
    for coord, branch in items:
        coord = str(coord).strip().lower()
        if coord not in _COORDS:
            raise ValueError(f"particles: unknown coordinate {coord!r} (use "
                             f"{', '.join(sorted(_COORDS))})")
        out[coord] = str(branch).strip()
    if _complete(out) is None:
        raise ValueError(f"particles: {sorted(out)} is not a complete coordinate set (pt, eta, "
                         f"phi[, mass]; px, py, pz, E; pt, y, phi)")
    return out


def _complete(coords: Mapping[str, str]) -> dict[str, str] | None:
    """The preferred complete coordinate set among ``coords`` (coordinate -> branch)."""
    for need, extras in _SETS:
        if all(c in coords for c in need):
            chosen = {c: coords[c] for c in need}
            for x in extras:
                if x in coords:
                    chosen[x] = coords[x]
                    break
            return chosen
    return None


def _list_branches(tree: Any) -> dict[str, str]:
    """Branches holding a list per entry (jagged or fixed-size) -> "jagged" | "fixed"."""
    import uproot

    out = {}
    for name, b in _branches(tree):
        interp = b.interpretation
        if isinstance(interp, uproot.AsJagged):
            out[name] = "jagged"
        elif isinstance(interp, uproot.AsDtype) and interp.inner_shape:
            out[name] = "fixed"
    return out


def _branches(tree: Any) -> list[tuple[str, Any]]:
    """(name, branch) of every branch, sub-branches included (Delphes' ``Particle.PT``)."""
    return list(tree.items(recursive=True, full_paths=False))


def _collections(tree: Any) -> dict[str, dict[str, str]]:
    """Complete particle collections of ``tree``: prefix -> coordinate -> branch."""
    groups: dict[str, dict[str, str]] = {}
    for name in _list_branches(tree):
        low = name.lower()
        for coord in _COORDS:
            prefix = name[:len(name) - len(coord)]
            if low.endswith(coord) and (prefix == "" or prefix[-1] in "_./"):
                groups.setdefault(prefix, {}).setdefault(coord, name)
                break
    return {p: c for p, c in ((p, _complete(g)) for p, g in groups.items()) if c is not None}


def _choose(tree: RootTree, particles, path: str) -> dict[str, str] | None:
    """coordinate -> branch for ``particles`` (see the module docstring); None if the tree
    has no collection (and nothing was asked for), EventFileError if the ask fails."""
    if isinstance(particles, dict):
        names = {n for n, _ in _branches(tree.tree)}
        missing = [b for b in particles.values() if b not in names]
        if missing:
            raise EventFileError(f"no branch {', '.join(missing)} (particles={particles})",
                                 path, tree.name)
        return particles
    found = _collections(tree.tree)
    if particles is not None:
        if particles not in found:
            raise EventFileError(f"no particle collection with prefix {particles!r} (found: "
                                 f"{sorted(found) or 'none'})", path, tree.name)
        return found[particles]
    if len(found) > 1:
        named = {p: c for p, c in found.items() if p.rstrip("_./").lower() in _PARTICLE_NAMES}
        if len(named) != 1:
            raise EventFileError(f"several particle collections ({', '.join(sorted(found))}): "
                                 f"choose one with particles='PREFIX' (CLI: --particles)",
                                 path, tree.name)
        found = named
    return next(iter(found.values()), None)


def _describe(tree: str, branches: Mapping[str, str]) -> str:
    """``TREE/PREFIX{pt,eta,phi}`` (or ``TREE/{a,b,c}``) for messages."""
    names = list(branches.values())
    prefix = os.path.commonprefix(names)
    if prefix and all(n[len(prefix):] for n in names):
        return f"{tree}/{prefix}{{{','.join(n[len(prefix):] for n in names)}}}"
    return f"{tree}/{{{','.join(names)}}}"


class RootReader(EventReader):
    """Reads a particle collection of a ROOT TTree (module docstring); options ``tree``,
    ``particles``, ``labels``, ``level``."""

    format_name = "root"
    container = ROOT
    option_names = ("tree", "particles", "labels", "level")

    def __init__(self, source: RootTree, path, *, tree: str | None = None, particles=None,
                 labels: str | None = None, level: str = "event"):
        super().__init__(source, path)
        if level not in _LEVELS:
            raise EventFileError(f"level must be 'event' or 'jet', got {level!r}", path)
        self.event_level = level == "event"
        self.branches = _choose(source, _parse(particles, self.path), self.path)
        if self.branches is None:
            raise EventFileError("no particle collection", path, source.name)
        self.dataset = _describe(source.name, self.branches)
        names = {n for n, _ in _branches(source.tree)}
        if labels is not None and labels not in names:
            raise EventFileError("missing label branch", path, f"{source.name}/{labels}")
        self.label_branch = labels or next((b for b in _LABEL_BRANCHES if b in names), None)

    @classmethod
    def sniff(cls, candidate: Any, path: str, *, tree: str | None = None, particles=None,
              **_: Any) -> bool:
        if not isinstance(candidate, RootTree):
            return False
        if tree is not None:
            if candidate.name.strip("/") != tree.strip("/"):
                return False
            if _choose(candidate, _parse(particles, path), path) is None:
                raise EventFileError("no particle collection (list branches PREFIX + "
                                     "pt/eta/phi[/mass] or px/py/pz/E); name it with "
                                     "particles=...", path, candidate.name)
            return True
        return _choose(candidate, _parse(particles, path), path) is not None

    @property
    def tree(self) -> Any:
        return self.source.tree

    @property
    def n_events(self) -> int:
        return int(self.tree.num_entries)

    def _read(self, branches: list[str], s: int, e: int, what: str):
        try:
            return self.tree.arrays(branches, entry_start=s, entry_stop=e, library="ak")
        except Exception as exc:
            raise EventFileError(f"entries {s}..{e - 1} unreadable ({exc})", self.path,
                                 what) from None

    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        import awkward as ak

        n = self.n_events
        s, e = event_range(start, stop, n)
        coords = list(self.branches)
        raw = self._read(list(self.branches.values()), s, e, self.dataset)
        counts = [ak.to_numpy(ak.num(raw[b], axis=1)) for b in self.branches.values()]
        for c, k in zip(coords[1:], counts[1:]):
            bad = np.flatnonzero(k != counts[0])
            if bad.size:
                raise EventFileError(f"branch {self.branches[c]} has {k[bad[0]]} values, "
                                     f"{self.branches[coords[0]]} {counts[0][bad[0]]}",
                                     self.path, self.dataset, s + int(bad[0]))
        # one flat record per particle: the conversion runs on plain numpy columns
        flat = {c: np.asarray(ak.to_numpy(ak.flatten(raw[b], axis=1)), dtype=np.float64)
                for c, b in self.branches.items()}
        pt, y, phi = _ptyphi(flat)
        pad = pt == 0  # zero pT is padding (fixed-size branches), whatever y and phi
        if pad.any():
            y, phi = np.where(pad, 0.0, y), np.where(pad, 0.0, phi)
        return EventBlock(pad_jagged(counts[0], pt, y, phi), self.dataset, n)

    def read_labels(self, start: int | None = None,
                    stop: int | None = None) -> np.ndarray | None:
        if self.label_branch is None:
            return None
        s, e = event_range(start, stop, self.n_events)
        where = f"{self.source.name}/{self.label_branch}"
        v = self._read([self.label_branch], s, e, where)[self.label_branch]
        return as_labels(np.asarray(v), self.path, where, s)

    def read_dataset(self, name: Any, start: int | None = None,
                     stop: int | None = None) -> np.ndarray:
        where = f"{self.source.name}/{name}"
        if name not in self.dataset_names():
            raise EventFileError("missing branch (or not one value per entry)", self.path,
                                 where)
        s, e = event_range(start, stop, self.n_events)
        import awkward as ak

        return ak.to_numpy(self._read([name], s, e, where)[name])

    def dataset_names(self) -> list[str]:
        """Branches with one value (or a fixed-size array) per entry."""
        lists = _list_branches(self.tree)
        return [n for n, b in _branches(self.tree)
                if lists.get(n) != "jagged" and not b.branches]


def _ptyphi(flat: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT, y, phi) float64 of flat coordinate columns. The common (pt, eta, phi[, mass])
    sets directly (:func:`physkit.kinematics.rapidity_from_pt_eta_mass`, the formula
    vector uses); the others through :func:`physkit.records.ptyphi` (vector)."""
    if set(flat) <= {"pt", "eta", "phi", "mass", "m"}:
        mass = flat.get("mass", flat.get("m"))
        y = flat["eta"] if mass is None else rapidity_from_pt_eta_mass(flat["pt"], flat["eta"],
                                                                        mass)
        return flat["pt"], y, flat["phi"]
    import awkward as ak

    from ..records import ptyphi

    return tuple(np.asarray(ak.to_numpy(v), dtype=np.float64)
                 for v in ptyphi(ak.zip(flat, depth_limit=1)))


def _parse(particles, path: str):
    try:
        return parse_particles(particles)
    except ValueError as exc:
        raise EventFileError(str(exc), path) from None
