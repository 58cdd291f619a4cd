"""The report in a real browser: Debian's chromium driven by playwright loads index.html,
every image loads (naturalWidth > 0) and the AUC table has one row per column.

``make test-browser`` installs both (apt: chromium; pip: playwright) and runs this file with
PHYSKIT_BROWSER_TEST=1, where a missing browser is a failure; in ``make test`` the test is
skipped, saying so, on machines without them."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from physkit.io import read_constituents, read_labels, write_events
from physkit.pipeline.cli import main
from physkit.pipeline.results import read_results, result_groups

BROWSERS = ("chromium", "chromium-browser")


def _browser() -> str:
    """The chromium executable; skips (or, under ``make test-browser``, fails) without
    chromium or playwright."""
    exe = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    try:
        import playwright.sync_api  # noqa: F401
        missing = None if exe else "no chromium on this machine"
    except ImportError:
        missing = "playwright is not installed"
    if missing:
        msg = (f"report browser check skipped: {missing}; `make test-browser` installs "
               f"Debian's chromium and playwright and runs it")
        if os.environ.get("PHYSKIT_BROWSER_TEST"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


@pytest.fixture(scope="module")
def report(tmp_path_factory, sample_path):
    exe = _browser()
    d = tmp_path_factory.mktemp("browser")
    p = write_events(str(d / "ev.h5"), read_constituents(sample_path, 0, 30),
                     read_labels(sample_path, 0, 30), attrs={"labels_meaning": "1 = top, 0 = QCD"})
    shapes = str(d / "sh.h5")
    assert main(["shape", p, "-o", shapes, "--observable", "2-subjettiness", "--observable",
                 "3-subjettiness", "--no-progress"]) == 0
    out = str(d / "rep")
    assert main(["report", shapes, "-o", out, "--displays", "2"]) == 0
    return exe, shapes, out


def test_report_loads_in_chromium(report):
    from playwright.sync_api import sync_playwright

    from physkit.pipeline.report import tau_ratios

    exe, shapes, out = report
    groups = result_groups(shapes)
    columns = groups + list(tau_ratios(read_results(shapes), groups))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe)
        try:
            page = browser.new_page()
            page.goto("file://" + os.path.join(out, "index.html"), wait_until="load")
            imgs = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.getAttribute('src'), e.complete, "
                       "e.naturalWidth, e.naturalHeight])")
            rows = page.eval_on_selector_all(
                "#auc tbody tr", "rs => rs.map(r => r.cells[0].textContent)")
            settings = page.inner_text("#settings")
            title = page.title()
        finally:
            browser.close()
    pngs = sorted(n for n in os.listdir(out) if n.endswith(".png"))
    assert sorted(src for src, *_ in imgs) == pngs and len(pngs) >= 6
    for src, complete, width, height in imgs:
        assert complete and width > 0 and height > 0, f"{src} did not load"
    assert rows == columns  # one AUC row per column, tau3/tau2 included
    assert "R = 0.8" in settings and "0 = QCD, 1 = top" in settings
    assert title == "physkit report: sh.h5"
    assert np.isfinite(read_results(shapes)["3-subjettiness/value"]).all()
