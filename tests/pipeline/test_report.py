"""physkit report: PNGs that open, an index.html that shows all of them."""
from __future__ import annotations

import os
from html.parser import HTMLParser

import numpy as np
import pytest

from physkit.pipeline.cli import main
from physkit.io import read_events, write_events
from physkit.pipeline.results import read_results


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.src.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, sample_path):
    import h5py

    d = tmp_path_factory.mktemp("report")
    ev = read_events(sample_path, 0, 40).to_padded()
    with h5py.File(sample_path) as f:
        labels = f["labels"][:40]
    p = write_events(str(d / "ev.h5"), ev, labels)
    shapes = str(d / "sh.h5")
    assert main(["shape", p, "-o", shapes, "--observable", "2-subjettiness",
                 "--no-progress"]) == 0
    model = str(d / "m.h5")
    assert main(["finder", "fit", p, "--features", f"shape:{shapes}", "--param",
                 "n_components=0", "--param", "n_residual=1", "-o", model,
                 "--no-progress"]) == 0
    scores = str(d / "sc.h5")
    assert main(["score", p, "--model", model, "-o", scores, "--no-progress"]) == 0
    out = str(d / "rep")
    assert main(["report", scores, "-o", out, "--displays", "2"]) == 0
    return out


def test_report_pngs_open_and_index_shows_them(report_dir):
    from PIL import Image

    pngs = sorted(n for n in os.listdir(report_dir) if n.endswith(".png"))
    for want in ("hist_score.png", "hist_2-subjettiness.png", "roc.png", "sic.png",
                 "event_0.png", "event_1.png"):
        assert want in pngs
    for n in pngs:
        with Image.open(os.path.join(report_dir, n)) as im:
            im.load()
            assert im.format == "PNG" and min(im.size) > 100
            arr = np.asarray(im.convert("L"))
            assert arr.std() > 1.0, f"{n} is blank"
    parser = _Imgs()
    parser.feed(open(os.path.join(report_dir, "index.html")).read())
    assert sorted(parser.src) == pngs
    assert "table" in parser.tags
    html = open(os.path.join(report_dir, "index.html")).read()
    assert "ROC AUC" in html and "2-subjettiness" in html


# ----------------------------------------------------------------------------- what it shows
@pytest.fixture(scope="module")
def labelled_report(tmp_path_factory, sample_path):
    """A score run (2- and 3-subjettiness features) on 40 sample jets whose file says what
    its labels mean; the report is made while every saved figure's legend, title and axis
    labels are recorded."""
    import matplotlib.figure

    d = tmp_path_factory.mktemp("labelled")
    ev = read_events(sample_path, 0, 40).to_padded()
    import h5py

    with h5py.File(sample_path) as f:
        labels = f["labels"][:40]
    p = write_events(str(d / "ev.h5"), ev, labels, attrs={"labels_meaning": "1 = top, 0 = QCD"})
    shapes = str(d / "sh.h5")
    assert main(["shape", p, "-o", shapes, "--observable", "2-subjettiness", "--observable",
                 "3-subjettiness", "--no-progress"]) == 0
    model = str(d / "m.h5")
    assert main(["finder", "fit", p, "--features", f"shape:{shapes}", "--param",
                 "n_components=0", "--param", "n_residual=1", "-o", model,
                 "--no-progress"]) == 0
    scores = str(d / "sc.h5")
    assert main(["score", p, "--model", model, "-o", scores, "--no-progress"]) == 0
    saved = {}
    orig = matplotlib.figure.Figure.savefig

    def recording(fig, fname, *args, **kwargs):
        ax = fig.axes[0]
        leg = ax.get_legend()
        saved[os.path.basename(str(fname))] = {
            "legend": [t.get_text() for t in leg.get_texts()] if leg else [],
            "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()}
        return orig(fig, fname, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(matplotlib.figure.Figure, "savefig", recording)
    try:
        out = str(d / "rep")
        assert main(["report", scores, "-o", out, "--displays", "2"]) == 0
    finally:
        mp.undo()
    return scores, out, saved


def test_histograms_name_the_classes_from_labels_meaning(labelled_report):
    scores, out, saved = labelled_report
    y = read_results(scores)["labels"]
    legend = saved["hist_2-subjettiness.png"]["legend"]
    assert sorted(legend) == sorted([f"QCD ({int((y == 0).sum())})",
                                     f"top ({int((y == 1).sum())})"])
    assert "(top)" in saved["roc.png"]["xlabel"] and "(QCD)" in saved["roc.png"]["ylabel"]
    html = open(os.path.join(out, "index.html")).read()
    assert "ROC AUC (top vs QCD)" in html


def test_tau_ratio_is_a_report_column(labelled_report):
    """tau3/tau2 (the demo's best discriminant) gets a histogram and an AUC row, computed
    from the 3- and 2-subjettiness values of the same rows."""
    from physkit.pipeline.report import discriminant_auc, tau_ratios

    scores, out, saved = labelled_report
    r = read_results(scores)
    assert "hist_tau3_tau2.png" in saved
    ratio = tau_ratios(r, ["2-subjettiness", "3-subjettiness", "score"])
    assert list(ratio) == ["tau3/tau2"]
    np.testing.assert_allclose(ratio["tau3/tau2"],
                               r["3-subjettiness/value"] / r["2-subjettiness/value"])
    auc, _ = discriminant_auc(ratio["tau3/tau2"], r["labels"])
    html = open(os.path.join(out, "index.html")).read()
    assert f"<tr><td>tau3/tau2</td><td>{auc:.4f}</td><td>lower</td></tr>" in html


def test_tau_ratios_pair_only_fitted_rows_and_matching_settings():
    from physkit.pipeline.report import tau_ratios

    data = {"1-subjettiness/value": np.array([0.4, 0.5, 0.0]),
            "2-Subjettiness/value": np.array([0.2, 0.1, 0.1]),
            "2-Subjettiness/status": np.array([0, 2, 0], np.int8),
            "3-subjettiness/value": np.array([0.1, 0.1, 0.1]),
            "3-subjettiness+pileup/value": np.array([0.1, 0.1, 0.1])}
    groups = ["1-subjettiness", "2-Subjettiness", "3-subjettiness", "3-subjettiness+pileup"]
    out = tau_ratios(data, groups)
    assert list(out) == ["tau2/tau1", "tau3/tau2"]
    np.testing.assert_allclose(out["tau2/tau1"], [0.5, np.nan, np.nan])  # status 2, tau1 = 0
    np.testing.assert_allclose(out["tau3/tau2"], [0.5, np.nan, 1.0])
    other = {"1-subjettiness": (0.8, 1.0), "2-Subjettiness": (0.8, 2.0),
             "3-subjettiness": (0.8, 2.0)}
    assert list(tau_ratios(data, groups, other)) == ["tau3/tau2"]


def test_event_display_titles_keep_the_values(labelled_report):
    scores, out, saved = labelled_report
    r = read_results(scores)
    title = saved["event_0.png"]["title"]
    head, *values = title.splitlines()
    i = int(head.split(" event ")[1].split(",")[0])
    assert head.endswith(", QCD") or head.endswith(", top")
    assert values == [f"2-subjettiness = {r['2-subjettiness/value'][i]:.4f}",
                      f"3-subjettiness = {r['3-subjettiness/value'][i]:.4f}"]
    assert {"2-subjettiness", "3-subjettiness"} <= set(saved["event_0.png"]["legend"])


def test_run_settings_on_the_page(labelled_report):
    from physkit.pipeline.modelfile import load_model

    scores, out, saved = labelled_report
    html = open(os.path.join(out, "index.html")).read()
    settings = html.split('<table id="settings">')[1].split("</table>")[0]
    assert "R = 0.8, \u03b2 = 1: 2-subjettiness, 3-subjettiness" in settings
    est = load_model(os.path.join(os.path.dirname(scores), "m.h5"))
    assert "finder.FINDER on 2 features" in settings
    assert f"n_residual_ = {est.n_residual_}" in settings and "physkit score" in settings
    assert "0 = QCD, 1 = top" in settings


def test_label_names_option_and_bad_values(labelled_report, tmp_path, capsys):
    scores, out, saved = labelled_report
    assert main(["report", scores, "-o", str(tmp_path / "r"), "--displays", "0",
                 "--label-names", "0=light quark,1=t"]) == 0
    html = open(tmp_path / "r" / "index.html").read()
    assert "ROC AUC (t vs light quark)" in html
    for bad in ("top", "1=", "x=top"):
        assert main(["report", scores, "-o", str(tmp_path / "r2"), "--label-names",
                     bad]) == 1
        assert "LABEL=NAME" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r2")


def test_parse_label_names():
    from physkit.pipeline.report import parse_label_names

    assert parse_label_names("1 = top, 0 = QCD") == {1: "top", 0: "QCD"}
    assert parse_label_names("0: W jets; 1: Z jets; -1: unknown") == \
        {0: "W jets", 1: "Z jets", -1: "unknown"}


def test_mplhep_style_only_when_installed(labelled_report, tmp_path, capsys, monkeypatch):
    """--style NAME uses mplhep's style of that name; without mplhep it is refused with a
    message (the default look is plain matplotlib, mplhep is never required)."""
    import sys
    import types

    import matplotlib.figure

    scores, out, saved = labelled_report
    monkeypatch.setitem(sys.modules, "mplhep", None)  # not installed
    assert main(["report", scores, "-o", str(tmp_path / "a"), "--style", "CMS"]) == 1
    assert "mplhep is not installed" in capsys.readouterr().err
    fake = types.SimpleNamespace(style=types.SimpleNamespace(CMS={"axes.titlesize": 31.0}))
    monkeypatch.setitem(sys.modules, "mplhep", fake)
    sizes = []
    orig = matplotlib.figure.Figure.savefig

    def recording(fig, *args, **kwargs):
        import matplotlib

        sizes.append(matplotlib.rcParams["axes.titlesize"])
        return orig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    assert main(["report", scores, "-o", str(tmp_path / "b"), "--displays", "0",
                 "--style", "CMS"]) == 0
    assert sizes and all(s == 31.0 for s in sizes)
    assert main(["report", scores, "-o", str(tmp_path / "c"), "--style", "Nope"]) == 1
    assert "not an mplhep style" in capsys.readouterr().err
