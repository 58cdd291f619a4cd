"""Nested observable families: parsed once from a name, used to seed larger members."""
import pytest
import torch

from physkit.flow.constraints import Free
from shaper import Observable, ParamSpec
from shaper.family import Family
from shaper.observables import from_family, from_name

SINGLE = {
    "3-subjettiness": Family("subjettiness", 3),
    "2-ringiness": Family("ringiness", 2),
    "1-ellipsiness": Family("ellipsiness", 1),
    "2-point-diskiness": Family("point-diskiness", 2),
    "12-point-ellipsiness": Family("point-ellipsiness", 12),
    "isotropy": Family("isotropy", 0),
    "2-diskiness+pileup": Family("diskiness", 2, pileup=True),
    "isotropy+pileup": Family("isotropy", 0, pileup=True),
}


@pytest.mark.parametrize("name,family", list(SINGLE.items()))
def test_parse_name_and_back(name, family):
    assert Family.from_name(name) == family
    assert family.name == name
    assert from_name(name).family == family  # the built-ins carry the parsed family
    assert from_family(family).name == name


@pytest.mark.parametrize("name", ["1-subjettiness+1-diskiness", "isotropy+1-diskiness", "pileup",
                                  "2-disk", "subjettiness", "0-isotropy", "3-subjettiness+",
                                  "2-diskiness+pileup+pileup", ""])
def test_not_a_single_family(name):
    assert Family.from_name(name) is None


def test_mixtures_have_no_family():
    assert from_name("1-subjettiness+1-diskiness").family is None
    assert from_name("1-subjettiness+1-diskiness+pileup").family is None


def test_smaller_members():
    assert Family("diskiness", 2, True).smaller() == [Family("diskiness", 2),
                                                      Family("diskiness", 1, True)]
    assert Family("subjettiness", 3).smaller() == [Family("subjettiness", 2)]
    assert Family("subjettiness", 1).smaller() == []
    assert Family("isotropy", 0, True).smaller() == [Family("isotropy", 0)]
    assert Family("ringiness", 3, True).fewer() == Family("ringiness", 2, True)


def test_families_are_hashable_keys():
    fitted = {Family("subjettiness", 2): 1}
    assert Family.from_name("2-subjettiness") in fitted
    assert Family("subjettiness", 2, True) not in fitted
    assert ("subjettiness", 2) not in fitted


def test_legacy_family_pairs_are_converted():
    assert Family.coerce(("diskiness+pileup", 2)) == Family("diskiness", 2, True)
    assert Family.coerce(("isotropy", 0)) == Family("isotropy", 0)
    obs = Observable("seg", {"c": ParamSpec((2,), Free(), "position")},
                     lambda p, k, R: (p["c"][:, None], torch.ones(p["c"].shape[0], 1)),
                     family=("segment", 1))
    assert obs.family == Family("segment", 1)


def test_unknown_kind_has_no_builder():
    with pytest.raises(ValueError, match="segment"):
        from_family(Family("segment", 1))
