"""What a new user meets first on the command line: help on every option with examples that
parse and are shell-safe, the observable list, --param keys checked before any work,
--start/--stop on every command that reads events, and ``info`` on a model showing what
the fit chose."""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess

import numpy as np
import pytest

from physkit.io import read_constituents, read_labels, write_events
from physkit.pipeline.cli import build_parser, main
from physkit.pipeline.results import read_results, results_settings


def _parsers(p: argparse.ArgumentParser, name=("physkit",)):
    """Every (sub)command parser with its name path."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, p
    for a in subs:
        for cmd, sp in a.choices.items():
            yield from _parsers(sp, name + (cmd,))


def _examples(p: argparse.ArgumentParser) -> list[str]:
    return [line.strip() for line in (p.epilog or "").splitlines()
            if line.strip().startswith("physkit ")]


def test_every_option_has_help_and_every_command_examples():
    for name, p in _parsers(build_parser()):
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help and a.help.strip(), f"{' '.join(name)}: {a.dest} has no help text"
        assert len(_examples(p)) >= 2, f"{' '.join(name)}: no example epilog"
        assert all(e.startswith(" ".join(name) + " ") or e == " ".join(name)
                   for e in _examples(p)), name


def test_epilog_examples_parse_and_are_shell_safe(tmp_path):
    """Each example parses as written, and bash splits it into the same words as the parser
    gets (an unquoted 'efp:d<=5' is a redirection in bash, not an argument)."""
    lines = [e for _, p in _parsers(build_parser()) for e in _examples(p)]
    for line in lines:
        argv = shlex.split(line)[1:]
        if "--list-observables" in argv or "--list-params" in argv:
            continue
        build_parser().parse_args(argv)  # SystemExit (status 2) if it does not parse
    script = "".join(f"printf '%s\\n' {line[len('physkit '):]}; echo '<END>'\n"
                     for line in lines)
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    words = r.stdout.split("<END>\n")[:-1]
    assert r.returncode == 0 and len(words) == len(lines), r.stderr
    for line, got in zip(lines, words):
        assert got.splitlines() == shlex.split(line)[1:], f"not shell-safe: {line}"
    assert os.listdir(tmp_path) == []  # no redirection wrote a file


def test_list_observables(capsys):
    from shaper.family import KINDS
    from shaper.observables import from_name

    from physkit.pipeline.observable_catalog import EXAMPLES

    with pytest.raises(SystemExit) as e:
        main(["shape", "--list-observables"])  # no inputs or -o needed
    assert e.value.code == 0
    out = capsys.readouterr().out
    for kind in KINDS:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(f"N-{kind} "))
        assert len(line.split(None, 1)[1]) > 20, f"no description for {kind}"
        for param in from_name(f"2-{kind}").specs:
            assert param in out
        from_name(f"2-{kind}")
    assert "isotropy" in out and "+pileup" in out and "pileup_fraction" in out
    for name in EXAMPLES:
        assert name in out
        from_name(name)  # the examples parse


def test_unknown_observable_points_to_the_list(tmp_path, capsys):
    p = write_events(str(tmp_path / "ev.h5"), np.ones((2, 3, 3), np.float32))
    assert main(["shape", p, "-o", str(tmp_path / "o.h5"), "--observable", "3-subjetiness",
                 "--no-progress"]) == 1
    assert "--list-observables" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small(tmp_path_factory, sample_path):
    d = tmp_path_factory.mktemp("small")
    p = write_events(str(d / "ev.h5"), read_constituents(sample_path, 0, 40),
                     read_labels(sample_path, 0, 40))
    shapes = str(d / "sh.h5")
    assert main(["shape", p, "-o", shapes, "--observable", "2-subjettiness",
                 "--observable", "3-subjettiness", "--no-progress"]) == 0
    return d, p, shapes


def test_misspelt_param_is_refused_before_any_feature(small, tmp_path, capsys, monkeypatch):
    """``--param n_residuals=5`` fails at once, naming the valid keys, instead of after
    every feature was computed."""
    import physkit.pipeline.features as features

    d, p, shapes = small

    def no_work(*args, **kwargs):
        raise AssertionError("features were computed before the parameters were checked")

    monkeypatch.setattr(features, "feature_chunk", no_work)
    assert main(["finder", "fit", p, "--features", f"shape:{shapes}", "--param",
                 "n_residuals=5", "-o", str(tmp_path / "m.h5"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "n_residuals" in err and "valid keys" in err and "did you mean n_residual" in err
    assert "n_components" in err and not os.path.exists(tmp_path / "m.h5")
    assert main(["finder", "fit", p, "--features", f"shape:{shapes}", "--estimator",
                 "detector", "--param", "n_residual=5", "-o", str(tmp_path / "m.h5"),
                 "--no-progress"]) == 1
    assert "contamination" in capsys.readouterr().err  # the detector's keys


def test_list_params(capsys):
    from finder import FINDER, ResidualDetector

    with pytest.raises(SystemExit) as e:
        main(["finder", "fit", "--list-params"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cls in (FINDER, ResidualDetector):
        for key in cls().get_params():
            assert f"--param {key}=" in out


def test_start_stop_on_shape_fit_and_score(small, tmp_path, capsys):
    d, p, shapes = small
    part = str(tmp_path / "part.h5")
    assert main(["shape", p, "-o", part, "--observable", "2-subjettiness",
                 "--observable", "3-subjettiness", "--start", "5", "--stop", "17",
                 "--chunk-size", "5", "--no-progress"]) == 0
    full, got = read_results(shapes), read_results(part)
    assert got["source_index"].tolist() == list(range(5, 17))
    np.testing.assert_array_equal(got["3-subjettiness/value"], full["3-subjettiness/value"][5:17])
    np.testing.assert_array_equal(got["labels"], full["labels"][5:17])
    assert results_settings(part)["settings"]["events"] == [5, 17]
    # fit on the same range of events as the shape run; score the first 9
    model = str(tmp_path / "m.h5")
    assert main(["finder", "fit", p, "--features", f"shape:{part}", "--start", "5", "--stop",
                 "17", "--param", "n_components=0", "--param", "n_residual=1", "-o", model,
                 "--no-progress"]) == 0
    assert "on 12 events" in capsys.readouterr().err
    scores = str(tmp_path / "sc.h5")
    assert main(["score", p, "--model", model, "-o", scores, "--stop", "9",
                 "--no-progress"]) == 0
    assert read_results(scores)["source_index"].tolist() == list(range(9))
    # a shape file of other events is refused, naming --start/--stop
    assert main(["finder", "fit", p, "--features", f"shape:{part}", "-o",
                 str(tmp_path / "m2.h5"), "--no-progress"]) == 1
    assert "--start/--stop" in capsys.readouterr().err


def test_bad_event_ranges(small, tmp_path, capsys):
    d, p, shapes = small
    out = str(tmp_path / "o.h5")
    base = ["shape", p, "-o", out, "--observable", "2-subjettiness", "--no-progress"]
    assert main(base + ["--start", "10", "--stop", "10"]) == 1
    assert "--stop 10 must be greater than --start 10" in capsys.readouterr().err
    assert main(base + ["--start", "400"]) == 1
    assert "no events selected" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(base + ["--stop", "-3"])
    assert e.value.code == 2 and "event index" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_plan_chunks_event_range():
    from physkit.parallel import plan_chunks

    chunks = plan_chunks(["a", "b"], 4, [10, 3], start=2, stop=9)
    assert [(c.file_index, c.start, c.stop) for c in chunks] == \
        [(0, 2, 6), (0, 6, 9), (1, 2, 3)]
    assert plan_chunks(["a"], 4, [10], start=20) == []
    with pytest.raises(ValueError):
        plan_chunks(["a"], 4, [10], start=5, stop=3)


def test_info_on_a_model_shows_the_fitted_values(small, tmp_path, capsys):
    """Requested n_components=8, n_residual=140 on two features: info shows what the fit
    chose (the loaded estimator's n_components_, n_residual_, head), not only the request."""
    from physkit.pipeline.modelfile import load_model

    d, p, shapes = small
    model = str(tmp_path / "m.h5")
    assert main(["finder", "fit", p, "--features", f"shape:{shapes}", "-o", model,
                 "--no-progress"]) == 0
    est = load_model(model)
    capsys.readouterr()
    assert main(["info", model]) == 0
    out = capsys.readouterr().out
    assert f"n_components_: {est.n_components_} (requested 8)" in out
    assert f"n_residual_: {est.n_residual_} (requested 140)" in out
    assert f"head_: {est.head_kind_}" in out
    assert "2-subjettiness, 3-subjettiness" in out  # the feature names
