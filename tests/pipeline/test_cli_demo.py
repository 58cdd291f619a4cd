"""physkit demo (what `make run` runs), on the first events of the bundled sample."""
from __future__ import annotations

import os
import re

import numpy as np
from sklearn.metrics import roc_auc_score

from physkit.pipeline.cli import main
from physkit.pipeline.results import read_results


def test_demo_prints_aucs_and_writes_plots(sample_path, tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["demo", "--out", out, "--n-events", "200", "--no-progress"]) == 0
    txt = capsys.readouterr().out
    aucs = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^  (\S.*?)\s+(0\.\d{3}|1\.000)", txt, re.M)}
    assert {"FINDER on SHAPER observables", "2-subjettiness", "3-subjettiness"} <= set(aucs)
    # the printed FINDER AUC is the test-set AUC of the written scores (not folded to >= 0.5)
    r = read_results(os.path.join(out, "test_scores.h5"))
    assert len(r["labels"]) == 100
    want = roc_auc_score(r["labels"], r["score/value"])
    assert abs(aucs["FINDER on SHAPER observables"] - want) < 1e-3
    # top vs QCD from tau_2, tau_3 is an easy problem: a working chain separates the classes
    assert want > 0.8
    assert np.isin(r["2-subjettiness/status"], (0, 1)).all()
    rep = os.path.join(out, "report")
    assert os.path.exists(os.path.join(rep, "index.html"))
    assert os.path.exists(os.path.join(rep, "roc.png"))
    for f in ("train.h5", "test.h5", "model.h5", "test_scores.h5", "train_shapes.h5"):
        assert os.path.exists(os.path.join(out, f))
