"""The catalogue of SHAPER observable names that ``physkit shape --list-observables`` prints:
each built-in kind with its parameters (read off the observables themselves) and one line
on what it measures."""
from __future__ import annotations

__all__ = ["WHAT_IT_MEASURES", "EXAMPLES", "observable_rows", "catalog_text"]

#: kind -> what the observable measures, in one line (a kind missing here falls back to
#: the first line of its builder's docstring)
WHAT_IT_MEASURES = {
    "subjettiness": "how well N point-like prongs describe the jet (N-subjettiness tau_N)",
    "ringiness": "how well N rings (energy uniform on circles) describe the jet",
    "diskiness": "how well N uniform disks (diffuse prongs) describe the jet",
    "ellipsiness": "how well N uniform ellipses (elongated, oriented prongs) describe the jet",
    "point-ringiness": "N prongs, each a point with a ring around it (core plus halo)",
    "point-diskiness": "N prongs, each a point inside a uniform disk (core plus diffuse spray)",
    "point-ellipsiness": "N prongs, each a point inside a uniform ellipse",
    "isotropy": "how far the jet is from energy spread uniformly over its disk of radius R",
}

#: names that parse (shown under the table)
EXAMPLES = ("3-subjettiness", "2-point-diskiness", "1-ellipsiness+pileup",
            "1-subjettiness+isotropy")


def _shape_text(d2: tuple, d3: tuple) -> str:
    """A parameter's per-jet shape with N in place of the sizes that grow with N (from its
    shapes at N = 2 and N = 3)."""
    dims = []
    for a, b in zip(d2, d3):
        dims.append(str(a) if a == b else "N" if (a, b) == (2, 3) else
                    f"{b - a}N" if a == 2 * (b - a) else f"{a}..{b}")
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def observable_rows() -> list[tuple[str, str, str]]:
    """``(name pattern, parameters, what it measures)`` of every built-in kind, isotropy,
    ``+pileup`` and mixtures."""
    from shaper.family import ISOTROPY, KINDS
    from shaper.observables import from_name

    rows = []
    for kind in KINDS:
        o2, o3 = from_name(f"2-{kind}"), from_name(f"3-{kind}")
        params = ", ".join(f"{k} {_shape_text(s.shape, o3.specs[k].shape)}"
                           for k, s in o2.specs.items())
        what = WHAT_IT_MEASURES.get(kind) or _doc_line(kind)
        rows.append((f"N-{kind}", params, what))
    iso = from_name(ISOTROPY)
    rows.append((ISOTROPY, ", ".join(iso.specs) or "none", WHAT_IT_MEASURES[ISOTROPY]))
    rows.append(("NAME+pileup", "NAME's + pileup_fraction ()",
                 "NAME plus a uniform floor on the jet disk; the floor's fraction is fitted"))
    rows.append(("A+B", "A's and B's (prefixed 'A.', 'B.') + mixture (2,)",
                 "a mixture of two observables, their fractions fitted"))
    return rows


def _doc_line(kind: str) -> str:
    from shaper import observables

    fn = getattr(observables, "n" + kind if kind == "subjettiness" else kind.replace("-", "_"),
                 None)
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def catalog_text() -> str:
    """The text ``physkit shape --list-observables`` prints."""
    lines = ["SHAPER observables (physkit shape --observable NAME; N = 1, 2, 3, ...).",
             "Each value is the EMD (cost (theta/R)^beta, --R and --beta) between the jet and",
             "the closest shape of the family; the fitted parameters are stored with it.", ""]
    for name, params, what in observable_rows():
        lines += [f"  {name:<20} {what}", f"  {'':<20} parameters: {params}"]
    lines += ["", "Positions (centers) are (y, phi); weights sum to 1; radii and semi_axes in "
              "units of y, phi; angles in radians.",
              "Names are case-insensitive; the paper's spellings work too "
              "(e.g. 2-(point+disk)iness).",
              "Examples: " + ", ".join(EXAMPLES)]
    return "\n".join(lines)
