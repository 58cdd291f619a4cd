"""Remake the screenshots the README links: ``docs/event_display.png`` (a top jet with three
fitted SHAPER observables, :func:`shaper.plot_event`) and ``docs/report.png`` (the report
page of ``physkit demo`` on 400 sample jets, rendered by Debian's chromium through
playwright).

Run from the top of the checkout: ``make screenshots`` (installs chromium and playwright
first) or ``.venv/bin/python docs/make_screenshots.py``. Work files go to
``out/screenshots/`` (git-ignored).
"""
from __future__ import annotations

import io
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
WORK = os.path.join(ROOT, "out", "screenshots")
SAMPLE = os.path.join(ROOT, "data", "jets_sample.h5")
#: the three observables of the event display: three prongs, a ring, a disk on a floor
DISPLAY_OBSERVABLES = ("3-subjettiness", "1-ringiness", "1-diskiness+pileup")
#: width (pixels) of the report screenshot as committed
REPORT_WIDTH = 1000


def _save_small(png: bytes, path: str, width: int | None = None) -> None:
    """Write ``png`` scaled to ``width`` and reduced to a 128-colour palette (small files)."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if width and im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {os.path.relpath(path, ROOT)} ({im.width}x{im.height}, "
          f"{os.path.getsize(path) / 1e3:.0f} kB)")


def event_display(path: str) -> None:
    """The first top jet of the sample with :data:`DISPLAY_OBSERVABLES` fitted and drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from physkit.io import read_events, read_labels
    from shaper import Shaper, plot_event

    i = int(np.flatnonzero(read_labels(SAMPLE, 0, 50) == 1)[0])
    jet = read_events(SAMPLE, i, i + 1)
    res = Shaper(list(DISPLAY_OBSERVABLES)).compute(jet)
    fig, ax = plt.subplots(figsize=(5.5, 6.2))
    plot_event(jet, res, 0, ax=ax)
    ax.set_title(f"data/jets_sample.h5 event {i} (top)\n{ax.get_title()}", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    _save_small(buf.getvalue(), path)


def report_page(path: str) -> int:
    """Run the demo on 400 jets into :data:`WORK` and screenshot its report page."""
    from physkit.pipeline.cli import main
    from physkit.pipeline.demo import run_demo

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        print("docs/make_screenshots.py: the report screenshot needs Debian's chromium and "
              "playwright: run `make screenshots` (it installs both)", file=sys.stderr)
        return 1
    demo = os.path.join(os.path.relpath(WORK, ROOT), "demo")  # the page shows this path
    os.chdir(ROOT)
    rc = run_demo(demo, main, n_events=400, progress=False)
    if rc:
        return rc
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto("file://" + os.path.join(ROOT, demo, "report", "index.html"),
                      wait_until="load")
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
    _save_small(png, path, width=REPORT_WIDTH)
    return 0


def main() -> int:
    os.makedirs(WORK, exist_ok=True)
    event_display(os.path.join(DOCS, "event_display.png"))
    return report_page(os.path.join(DOCS, "report.png"))


if __name__ == "__main__":
    sys.exit(main())
