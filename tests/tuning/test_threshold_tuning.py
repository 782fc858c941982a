"""Threshold tuning (F1 and precision by hand), ast-thresholds, ast-classify --threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from helpers.runtime_toy import metadata_of, toy_model
from helpers.stream import FRAMES, SR, scene

from ast_onnx.cli import classify, thresholds
from ast_onnx.errors import EvalSetError, InvalidOptionError
from ast_onnx.runtime import EventOptions, Runtime
from ast_onnx.tuning.thresholds import eval_targets, tune_thresholds

pytest.importorskip("onnx")

#: Worked by hand. Class a: candidates 0.9 (tp 1 of 1 called, F1 2/4), 0.8 (1/2, 2/5),
#: 0.7 (2/3, 4/6), 0.6 (3/4, 6/7), 0.3 (3/5, 6/8): best F1 6/7 at 0.6.
SCORES_A = [0.9, 0.8, 0.7, 0.6, 0.3]
TRUTH_A = [1, 0, 1, 1, 0]


def test_f1_threshold_by_hand():
    s = np.array([SCORES_A, [0.5] * 5, [0.1, 0.2, 0.3, 0.4, 0.5]]).T
    y = np.array([TRUTH_A, [1, 1, 0, 0, 0], [0] * 5]).T
    t = tune_thresholds(s, y, ["a", "b", "c"])
    assert t.thresholds[0] == 0.6
    assert t.f1[0] == pytest.approx(6 / 7)
    assert (t.precision[0], t.recall[0]) == (pytest.approx(0.75), 1.0)
    # b: all scores tie, so the only candidate calls all 5: P 2/5, R 1, F1 4/7.
    assert t.thresholds[1] == 0.5 and t.f1[1] == pytest.approx(4 / 7)
    # c: no positive clip, nothing to tune on.
    assert np.isnan(t.thresholds[2]) and t.tuned == {"a": 0.6, "b": 0.5}
    assert t.positives.tolist() == [3, 2, 0] and t.criterion == "f1"
    row = json.loads(json.dumps(t.to_dict(), allow_nan=False))["classes"][2]
    assert row == {
        "label": "c",
        "threshold": None,
        "f1": None,
        "precision": None,
        "recall": None,
        "positives": 0,
    }


def test_f1_ties_take_the_highest_threshold():
    # Thresholds 0.9 (tp1 of 1: F1 2/3) and 0.5 (tp 2 of 4: F1 4/6): equal; 0.9 wins.
    t = tune_thresholds(np.array([[0.9, 0.8, 0.7, 0.5]]).T, np.array([[1, 0, 0, 1]]).T, ["a"])
    assert t.thresholds[0] == 0.9 and t.f1[0] == pytest.approx(2 / 3)


def test_target_precision_by_hand():
    s, y = np.array([SCORES_A]).T, np.array([TRUTH_A]).T
    # Precision per candidate: 0.9 -> 1, 0.8 -> 1/2, 0.7 -> 2/3, 0.6 -> 3/4, 0.3 -> 3/5.
    assert tune_thresholds(s, y, ["a"], target_precision=0.9).thresholds[0] == 0.9
    # >= 0.6: 0.9, 0.7, 0.6, 0.3 qualify; 0.6 and 0.3 both have recall 1: the higher.
    t = tune_thresholds(s, y, ["a"], target_precision=0.6)
    assert t.thresholds[0] == 0.6 and t.recall[0] == 1.0 and t.criterion == "precision>=0.6"
    t = tune_thresholds(s, y, ["a"], target_precision=0.7)
    assert t.thresholds[0] == 0.6 and t.precision[0] == 0.75
    never = tune_thresholds(np.array([[0.9, 0.1]]).T, np.array([[0, 1]]).T, ["a"], 0.9)
    assert np.isnan(never.thresholds[0]) and never.tuned == {}


def test_bad_tuning_input_is_refused():
    with pytest.raises(InvalidOptionError, match="must both be"):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(InvalidOptionError, match="finite"):
        tune_thresholds(np.full((2, 1), np.nan), np.ones((2, 1)), ["a"])
    with pytest.raises(InvalidOptionError, match="target precision"):
        tune_thresholds(np.zeros((2, 1)), np.ones((2, 1)), ["a"], target_precision=0)
    with pytest.raises(EvalSetError, match="'dog'"):
        eval_targets([["a"], ["dog"]], ["a", "b"])
    assert eval_targets([["a", "b"], []], ["a", "b"]).tolist() == [[True, True], [False, False]]


# ----- the commands -----


@pytest.fixture
def labelled(tmp_path):
    """A toy model and an eval dir whose class-0 labels its own scores separate perfectly."""
    model = toy_model(tmp_path / "toy.onnx", frames=FRAMES, labels=4)
    rt = Runtime(model, providers="cpu")
    waves = [scene(0.2, seed) for seed in range(8)]
    s0 = np.array([rt.classify(w).scores[0] for w in waves])
    positive = s0 >= np.median(s0)
    rows = ["file,label"]
    for i, (wave, pos) in enumerate(zip(waves, positive, strict=True)):
        sf.write(tmp_path / f"c{i}.wav", wave, SR, subtype="FLOAT")
        rows.append(f"c{i}.wav,{'toy_0;toy_1' if pos else 'toy_1'}")
    (tmp_path / "eval").mkdir()
    for i in range(len(waves)):
        (tmp_path / f"c{i}.wav").rename(tmp_path / "eval" / f"c{i}.wav")
    (tmp_path / "eval" / "labels.csv").write_text("\n".join(rows) + "\n")
    # Perfect separation: F1 1 at the lowest positive score (float32 as classify gives it).
    return model, tmp_path / "eval", float(s0[positive].min())


def run(main, argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ast_thresholds_tunes_and_writes_into_the_model(labelled, capsys):
    model, eval_dir, want = labelled
    code, out, err = run(thresholds.main, [model, "--eval", eval_dir, "--json"], capsys)
    assert code == 0, err
    rows = {r["label"]: r for r in json.loads(out)["classes"]}
    assert rows["toy_0"]["threshold"] == pytest.approx(want, abs=1e-6)
    assert rows["toy_0"]["f1"] == 1.0 and rows["toy_0"]["positives"] == 4
    assert rows["toy_1"]["positives"] == 8 and rows["toy_2"]["threshold"] is None
    untouched = metadata_of(model)  # not written without --write: still a version-1 file
    assert "thresholds" not in untouched and untouched["schema_version"] == 1
    code, out, err = run(thresholds.main, [model, "--eval", eval_dir, "--write"], capsys)
    assert code == 0, err
    assert "toy_0" in out and "wrote 2 threshold(s)" in err
    stored = metadata_of(model)["thresholds"]  # as onnx reads it back
    assert set(stored) == {"toy_0", "toy_1"}
    assert stored["toy_0"] == pytest.approx(want, abs=1e-6)
    # ast-classify --threshold model now calls exactly the labelled clips toy_0.
    code, out, err = run(classify.main, [model, eval_dir, "--json", "--threshold", "model"], capsys)
    assert code == 0, err
    truth = dict(line.split(",") for line in (eval_dir / "labels.csv").read_text().split()[1:])
    for row in map(json.loads, out.splitlines()):
        called = "toy_0" in {p["label"] for p in row["labels"]}
        assert called == ("toy_0" in truth[row["path"].rsplit("/", 1)[1]])


def test_ast_thresholds_errors(labelled, tmp_path, capsys):
    model, eval_dir, _ = labelled
    code, _, err = run(thresholds.main, [model, "--eval", tmp_path / "none"], capsys)
    assert code == 1 and "is not a directory" in err
    code, _, err = run(
        thresholds.main, [model, "--eval", eval_dir, "--target-precision", "2"], capsys
    )
    assert code == 2 and "target precision" in err


def test_ast_classify_threshold_and_events(labelled, tmp_path, capsys):
    model, _, _ = labelled
    sf.write(tmp_path / "long.wav", scene(3.0, 1), SR, subtype="FLOAT")
    args = [model, tmp_path / "long.wav", "--hop", "0.05"]
    code, out, err = run(classify.main, [*args, "--json", "--events", "--threshold", "0.6"], capsys)
    assert code == 0, err
    row = json.loads(out)
    want = Runtime(model, providers="cpu", window_hop=0.05).classify(
        str(tmp_path / "long.wav"), events=EventOptions(threshold=0.6), threshold=0.6
    )  # --threshold is the events' on threshold too
    assert row["events"] == [e.to_dict() for e in want.events] and want.events
    assert [p["index"] for p in row["labels"]] == [p.index for p in want.labels]
    code, out, err = run(classify.main, [*args, "--events"], capsys)
    assert code == 0, err
    assert out.count("event [") == len(
        Runtime(model, providers="cpu", window_hop=0.05)
        .classify(str(tmp_path / "long.wav"), events=True)
        .events
    )
    code, out, err = run(classify.main, [*args, "--json", "--threshold", "1"], capsys)
    assert code == 0 and json.loads(out)["labels"] == [] and "events" not in json.loads(out)
    with pytest.raises(SystemExit) as exit_:  # argparse: a usage error
        classify.main([str(a) for a in [*args, "--threshold", "1.5"]])
    assert exit_.value.code == 2 and "in [0, 1] or 'model'" in capsys.readouterr().err
    code, _, err = run(classify.main, [*args, "--threshold", "model"], capsys)
    assert code == 2 and "stores no thresholds" in err
