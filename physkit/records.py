"""Particle records (awkward arrays, ``vector`` arrays) as (pT, y, phi) in any coordinates.

Records are read in two conventions:

* physkit's / energyflow's own: fields ``pt``, ``y`` (the **rapidity**) and ``phi``, or
  ``pt``, ``rapidity``, ``phi`` -- taken as they are (``y`` here is not vector's Cartesian
  ``y``: a record with ``pt`` and ``phi`` and no ``x``/``px`` is read this way);
* everything else through the ``vector`` package, so every coordinate system it knows
  works: momentum names (``pt, eta, phi, mass``; ``px, py, pz, E``; ``pt, eta, phi, E``;
  ``pt, theta, phi, m``; ...) and generic ones (``x, y, z, t``; ``rho, eta, phi, tau``;
  ...), and arrays that already carry vector's behaviour (``Momentum4D``, ``Vector4D``,
  ...). Field names are matched case-insensitively (Delphes' ``PT``, ``Eta``). For
  four-vectors ``y`` is the true rapidity ``0.5 ln((E + pz) / (E - pz))`` (so a given
  mass changes it); three-vectors are massless (``y = eta``). Two-vectors are refused.

Any list nesting works (events -> particles, events -> jets -> particles): the returned
arrays have the structure of the input.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ptyphi", "record_fields"]

#: field names vector understands (lower case) -> the spelling vector wants
_VECTOR_NAMES = {n.lower(): n for n in (
    "x", "y", "z", "t", "rho", "phi", "eta", "theta", "tau",
    "px", "py", "pz", "pt", "E", "energy", "mass",
)}
_VECTOR_NAMES["e"] = "E"
_VECTOR_NAMES["m"] = "mass"
_VECTOR_RECORDS = {f"{kind}{d}D" for kind in ("Vector", "Momentum") for d in (2, 3, 4)}
#: coordinate sets tried first (lower case), so that records carrying more coordinate-like
#: fields (a vertex ``x, y, z`` next to ``pt, eta, phi, mass``) read the momentum
#: (vector's spellings: ``m`` is read as ``mass``, ``e`` as ``E``)
_PREFERRED = (("pt", "eta", "phi", "mass"), ("pt", "eta", "phi", "E"),
              ("pt", "eta", "phi", "energy"), ("px", "py", "pz", "E"),
              ("px", "py", "pz", "energy"), ("pt", "eta", "phi"), ("x", "y", "z", "t"),
              ("rho", "eta", "phi", "tau"))


def record_fields(records: Any) -> dict[str, str]:
    """Lower-cased field name -> the field's own spelling; ValueError on clashes (``E`` and
    ``e``)."""
    import awkward as ak

    out: dict[str, str] = {}
    for f in ak.fields(records):
        low = f.lower()
        if low in out:
            raise ValueError(f"particle records have fields {out[low]!r} and {f!r}, which "
                             f"differ only in case; rename one")
        out[low] = f
    return out


def _vector_record_name(records: Any) -> str | None:
    name = records.layout.purelist_parameter("__record__")
    return name if name in _VECTOR_RECORDS else None


def _as_vectors(records: Any, fields: dict[str, str]):
    """The records as a vector awkward array (behaviour attached)."""
    import vector

    if _vector_record_name(records) is not None:
        return vector.Array(records)
    named = {_VECTOR_NAMES[low]: f for low, f in fields.items() if low in _VECTOR_NAMES}
    chosen = next((c for c in _PREFERRED if all(k in named for k in c)), list(named))
    known = {k: records[named[k]] for k in chosen}
    try:
        return vector.zip(known)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"particle records with fields {sorted(fields.values())} are not a coordinate "
            f"system vector knows ({exc.__class__.__name__}); use (pt, y, phi), "
            f"(pt, eta, phi[, mass]), (px, py, pz, E), (x, y, z, t), (rho, eta, phi, tau), "
            f"...") from None


def ptyphi(records: Any) -> tuple[Any, Any, Any]:
    """``(pt, y, phi)`` awkward arrays (structure of ``records``) of particle records.

    ``records``: an ``ak.Array`` of records in any list nesting (see the module docstring
    for the conventions). Raises ValueError for records that are not momenta.
    """
    import awkward as ak

    if not isinstance(records, ak.Array) or not ak.fields(records):
        raise ValueError(f"expected an awkward array of particle records, got "
                         f"{type(records).__name__}")
    fields = record_fields(records)
    plain = _vector_record_name(records) is None
    if plain and "pt" in fields and "phi" in fields and not ({"x", "px"} & set(fields)):
        for rap in ("y", "rapidity"):
            if rap in fields:
                return records[fields["pt"]], records[fields[rap]], records[fields["phi"]]
    vec = _as_vectors(records, fields)
    dim = {2: "2D", 3: "3D", 4: "4D"}.get(_dimension(vec))
    if dim == "2D" or dim is None:
        raise ValueError(f"particle records with fields {sorted(fields.values())} have no "
                         f"longitudinal coordinate: a rapidity cannot be computed")
    y = vec.eta if dim == "3D" else vec.rapidity
    return vec.rho, y, vec.phi


def _dimension(vec: Any) -> int | None:
    import vector

    for d, cls in ((4, vector.backends.awkward.VectorAwkward4D),
                   (3, vector.backends.awkward.VectorAwkward3D),
                   (2, vector.backends.awkward.VectorAwkward2D)):
        if isinstance(vec, cls):
            return d
    return None
