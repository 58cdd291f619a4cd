"""physkit report: PNGs that open, an index.html that shows all of them."""
from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from physkit.pipeline.cli import main
from physkit.io import read_events, write_events


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


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    exe = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
    if exe is None:
        pytest.skip("no Chromium on this machine")
    shot = str(tmp_path / "shot.png")
    subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox",
                    f"--screenshot={shot}", "--window-size=1200,1600",
                    "file://" + os.path.join(report_dir, "index.html")],
                   check=True, timeout=120, capture_output=True)
    from PIL import Image

    with Image.open(shot) as im:
        assert np.asarray(im.convert("L")).std() > 5.0
