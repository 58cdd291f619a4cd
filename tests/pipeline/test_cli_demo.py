"""physkit demo (what `make run` runs), on the first events of the bundled sample."""
from __future__ import annotations

import os

from physkit.pipeline.cli import main


def test_demo_prints_aucs_and_writes_plots(sample_path, tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["demo", "--out", out, "--n-events", "80", "--no-progress"]) == 0
    txt = capsys.readouterr().out
    assert "FINDER on SHAPER observables" in txt and "3-subjettiness" in txt
    aucs = [float(line.split()[-1]) for line in txt.splitlines()
            if line.startswith("  FINDER on SHAPER")]
    assert len(aucs) == 1 and 0.0 <= aucs[0] <= 1.0
    rep = os.path.join(out, "report")
    assert os.path.exists(os.path.join(rep, "index.html"))
    assert os.path.exists(os.path.join(rep, "roc.png"))
    for f in ("train.h5", "test.h5", "model.h5", "test_scores.h5", "train_shapes.h5"):
        assert os.path.exists(os.path.join(out, f))
