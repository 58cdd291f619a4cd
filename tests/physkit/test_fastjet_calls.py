"""physkit.fastjet_calls: one lock and warning state for every fastjet call."""
import threading
import warnings

import numpy as np
import pytest

from physkit.fastjet_calls import fastjet_call, massless_four_vectors


def test_fastjet_call_silences_only_named_warnings_and_restores_formatwarning():
    before = warnings.formatwarning

    def noisy():
        warnings.formatwarning = lambda *a, **k: "replaced"  # what fastjet does when it warns
        warnings.warn("dcut and exclusive jets: take care")
        warnings.warn("something else")
        return 7

    with pytest.warns(UserWarning, match="something else") as rec:
        assert fastjet_call(noisy, ignore=("dcut and exclusive jets",)) == 7
    assert [str(w.message) for w in rec] == ["something else"]
    assert warnings.formatwarning is before


def test_fastjet_calls_do_not_interleave():
    inside, overlaps = [0], []

    def work():
        inside[0] += 1
        overlaps.append(inside[0])
        threading.Event().wait(0.01)
        inside[0] -= 1

    threads = [threading.Thread(target=fastjet_call, args=(work,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


def test_massless_four_vectors():
    pt, y, phi = np.array([10.0, 20.0, 5.0]), np.array([0.5, -1.0, 0.0]), np.array([0.1, 3.0, -2.0])
    arr = massless_four_vectors(np.array([2, 1]), pt, y, phi)
    assert [len(r) for r in arr.px.tolist()] == [2, 1]
    px = np.concatenate(arr.px.tolist())
    e = np.concatenate(arr.E.tolist())
    pz = np.concatenate(arr.pz.tolist())
    py = np.concatenate(arr.py.tolist())
    np.testing.assert_allclose(e ** 2 - px ** 2 - py ** 2 - pz ** 2, 0.0, atol=1e-9)
    np.testing.assert_allclose(np.hypot(px, py), pt)
    np.testing.assert_allclose(0.5 * np.log((e + pz) / (e - pz)), y)
