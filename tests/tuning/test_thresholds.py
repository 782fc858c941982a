"""Thresholds in the model's metadata: schema 2, in-place rewrite, and where they apply.

References: the JSON onnx itself reads back from the rewritten file, the bytes of the
external data file, a hand-written schema-1 document, and label sets worked out from the
toy model's own weights in numpy (``toy_logits``).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from helpers.runtime_toy import metadata_of, toy_logits, toy_model
from helpers.stream import FRAMES, push_all, scene

from ast_onnx.errors import InvalidOptionError, MetadataError, ModelError
from ast_onnx.frontend import FeatureExtractor
from ast_onnx.metadata import METADATA_KEY, SCHEMA_VERSION, ModelMetadata
from ast_onnx.runtime import Runtime
from ast_onnx.runtime.events import EventOptions

onnx = pytest.importorskip("onnx")
from ast_onnx.model_files import data_path, save_model  # noqa: E402
from ast_onnx.tuning.model_thresholds import write_thresholds  # noqa: E402

LABELS = [f"toy_{i}" for i in range(6)]


def doc(**fields) -> dict:
    """A metadata document as a file would hold it (plain JSON types)."""
    base = {
        "labels": list(LABELS),
        "activation": "sigmoid",
        "frontend": FeatureExtractor(max_length=FRAMES).to_dict(),
    }
    return json.loads(json.dumps({**base, **fields}))


# ----- the schema -----


def test_schema_version_1_files_still_load():
    assert SCHEMA_VERSION >= 2
    old = ModelMetadata.from_props({METADATA_KEY: json.dumps(doc(schema_version=1))})
    assert old.schema_version == 1 and old.thresholds == {} and old.threshold_vector() is None
    # A key named like the new field in a version-1 file is not read as thresholds.
    legacy = doc(schema_version=1, thresholds={"toy_0": 0.9})
    old = ModelMetadata.from_dict(legacy)
    assert old.thresholds == {} and old.extra == {"thresholds": {"toy_0": 0.9}}
    # Written back, a version-1 document stays one (no new keys that would move to extra).
    again = ModelMetadata.from_props(ModelMetadata.from_dict(doc(schema_version=1)).to_props())
    assert again.to_dict() == ModelMetadata.from_dict(doc(schema_version=1)).to_dict()
    assert "thresholds" not in again.to_dict() and again.extra == {}


def test_thresholds_round_trip_and_fill_the_vector():
    meta = ModelMetadata.from_dict(doc(thresholds={"toy_1": 0.2, "toy_4": 1}, schema_version=2))
    again = ModelMetadata.from_props(meta.to_props())
    assert again.thresholds == {"toy_1": 0.2, "toy_4": 1.0}
    assert again.threshold_vector() == [0.5, 0.2, 0.5, 0.5, 1.0, 0.5]
    with_default = ModelMetadata.from_dict(doc(thresholds={"toy_1": 0.2}, default_threshold=0.7))
    assert with_default.threshold_vector() == [0.7, 0.2, 0.7, 0.7, 0.7, 0.7]
    assert ModelMetadata.from_dict(doc(default_threshold=0)).threshold_vector() == [0.0] * 6


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (dict(thresholds={"toy_0": 1.5}), r"thresholds\['toy_0'\] must be a number in \[0, 1\]"),
        (dict(thresholds={"toy_0": -0.1}), r"in \[0, 1\]"),
        (dict(thresholds={"toy_0": True}), r"in \[0, 1\]"),
        (dict(thresholds={"toy_0": "0.5"}), r"in \[0, 1\]"),
        (dict(thresholds={"toy_0": None}), r"in \[0, 1\]"),
        (dict(thresholds={"cat": 0.5}), "'cat', which is not one of the model's 6 labels"),
        (dict(thresholds=[0.5] * 6), "thresholds must be a JSON object"),
        (dict(default_threshold=2), r"default_threshold must be a number in \[0, 1\]"),
        (dict(default_threshold="high"), "default_threshold"),
        (
            dict(schema_version=SCHEMA_VERSION + 1),
            f"schema_version {SCHEMA_VERSION + 1}; this ast-onnx reads versions "
            f"<= {SCHEMA_VERSION}",
        ),
    ],
)
def test_bad_thresholds_in_a_file_are_refused(fields, match):
    with pytest.raises(MetadataError, match=match):
        ModelMetadata.from_props({METADATA_KEY: json.dumps(doc(**fields))})


def test_nan_thresholds_are_refused():
    with pytest.raises(MetadataError, match=r"in \[0, 1\]"):
        ModelMetadata.from_dict({**doc(), "thresholds": {"toy_0": float("nan")}})
    with pytest.raises(MetadataError, match="need schema_version >= 2"):
        ModelMetadata(LABELS, "sigmoid", {}, thresholds={"toy_0": 0.5}, schema_version=1)


# ----- writing them into a model -----


@pytest.fixture
def toy(tmp_path):
    return toy_model(tmp_path / "toy.onnx", frames=FRAMES, labels=6)


def test_write_thresholds_rewrites_the_metadata_in_place(toy):
    before = onnx.load(str(toy))
    os.chmod(toy, 0o640)
    meta = write_thresholds(toy, {"toy_2": 0.25}, default=0.6)
    after = onnx.load(str(toy))
    onnx.checker.check_model(after)
    data = metadata_of(toy)  # what onnx reads back, not what we returned
    assert data["thresholds"] == {"toy_2": 0.25} and data["default_threshold"] == 0.6
    assert data["schema_version"] == 2 == meta.written_version()  # thresholds: version 2
    assert data["labels"] == LABELS and data["activation"] == "sigmoid"
    assert after.graph == before.graph
    assert (toy.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in toy.parent.iterdir()] == ["toy.onnx"]  # no temporary left
    # A list is index-aligned with the labels, and replaces the earlier thresholds.
    write_thresholds(toy, np.linspace(0.1, 0.6, 6, dtype=np.float32))
    data = metadata_of(toy)
    assert data["thresholds"] == pytest.approx(
        {f"toy_{i}": v for i, v in enumerate(np.linspace(0.1, 0.6, 6))}
    )
    assert data["default_threshold"] is None
    np.testing.assert_allclose(
        Runtime(toy, providers="cpu").thresholds, np.linspace(0.1, 0.6, 6), rtol=1e-6
    )


def test_write_thresholds_keeps_external_data_intact(tmp_path):
    single = toy_model(tmp_path / "single.onnx", frames=FRAMES, labels=6)
    path = tmp_path / "ext" / "toy.onnx"
    path.parent.mkdir()
    save_model(onnx, onnx.load(str(single)), path, external_data=True)
    data = data_path(path)
    digest, inode = hashlib.sha256(data.read_bytes()).hexdigest(), data.stat().st_ino
    wave = scene(3.0, 2)
    reference = Runtime(path, providers="cpu").classify(wave).scores
    write_thresholds(path, {"toy_0": 0.3})
    assert hashlib.sha256(data.read_bytes()).hexdigest() == digest
    assert data.stat().st_ino == inode  # not rewritten
    loaded = onnx.load(str(path))  # onnx resolves the external tensors from the data file
    w = onnx.numpy_helper.to_array(loaded.graph.initializer[0])
    np.testing.assert_array_equal(
        w, onnx.numpy_helper.to_array(onnx.load(str(single)).graph.initializer[0])
    )
    rt = Runtime(path, providers="cpu")
    np.testing.assert_array_equal(rt.classify(wave).scores, reference)
    assert rt.thresholds.tolist() == [0.3] + [0.5] * 5


def test_write_thresholds_refuses_bad_values_and_leaves_the_file_alone(toy, tmp_path):
    before = toy.read_bytes()
    for bad, match in (
        ({"toy_0": 1.2}, r"in \[0, 1\]"),
        ({"dog": 0.5}, "'dog'"),
        ([0.5] * 5, "5 values for the model's 6 labels"),
        ("0.5", "mapping or a list"),
    ):
        with pytest.raises(MetadataError, match=match):
            write_thresholds(toy, bad)
    with pytest.raises(MetadataError, match="default_threshold"):
        write_thresholds(toy, {}, default=-1)
    assert toy.read_bytes() == before
    bare = toy_model(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(MetadataError, match="no 'ast_onnx' metadata"):
        write_thresholds(bare, {})
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot read ONNX model"):
        write_thresholds(tmp_path / "junk.onnx", {})


# ----- where they apply -----


def expected_scores(rt: Runtime, wave: np.ndarray) -> np.ndarray:
    """The toy's clip scores from its weights in numpy (one window: wave fits it)."""
    logits = toy_logits(rt.path, rt.features(wave))[0]
    return 1.0 / (1.0 + np.exp(-logits))


def test_classify_threshold_reports_every_label_at_or_above_it(toy):
    rt = Runtime(toy, providers="cpu")
    wave = scene(0.15, 3)  # within one window
    scores = expected_scores(rt, wave)
    ranked = np.sort(scores)
    cut = float(ranked[1] + ranked[2]) / 2
    result = rt.classify(wave, threshold=cut, top_k=1)
    want = sorted(np.flatnonzero(scores >= cut), key=lambda i: -scores[i])
    assert [p.index for p in result.labels] == want and len(want) == 4  # top_k not applied
    assert [p.index for p in result.windows[0].labels] == want
    own = result.scores[want[-1]]  # a label's own score reaches it: inclusive
    assert [p.index for p in rt.classify(wave, threshold=float(own)).labels] == want
    assert rt.classify(wave, threshold=1.0).labels == []
    assert len(rt.classify(wave, threshold=0.0).labels) == 6
    for bad in (1.5, -0.1, float("nan"), "0.5"):
        with pytest.raises(InvalidOptionError, match="threshold must be in"):
            rt.classify(wave, threshold=bad)
    with pytest.raises(InvalidOptionError, match="stores no thresholds"):
        rt.classify(wave, threshold=True)
    # The model's own thresholds, after they are written.
    per_class = np.where(np.arange(6) % 2 == 0, 0.0, 1.0)  # even labels always, odd never
    write_thresholds(toy, per_class.tolist())
    tuned = Runtime(toy, providers="cpu").classify(wave, threshold=True)
    assert sorted(p.index for p in tuned.labels) == [0, 2, 4]


def test_events_default_to_the_model_thresholds_under_explicit_ones(toy):
    wave = scene(4.0, 1)
    plain = Runtime(toy, providers="cpu", window_hop=0.05)
    # Each class's median window score: on about half the time, unlike at 0.5.
    timeline = np.stack([w.scores for w in plain.classify(wave).windows])
    medians = np.median(timeline, axis=0).astype(np.float64).tolist()
    write_thresholds(toy, dict(zip(LABELS[:4], medians[:4], strict=True)), default=medians[4])
    rt = Runtime(toy, providers="cpu", window_hop=0.05)
    stored = {**dict(zip(LABELS, medians[:5], strict=False)), "toy_5": medians[4]}
    # Reference: the same thresholds given explicitly to a model that has none.
    want = plain.classify(wave, events=EventOptions(thresholds=stored)).events
    assert want  # the scene gives events at these thresholds, not those of 0.5:
    assert want != plain.classify(wave, events=True).events
    assert rt.classify(wave, events=True).events == want
    assert rt.classify(wave, events=EventOptions()).events == want
    stream = rt.stream(hop=0.05)
    _, streamed, _ = push_all(stream, wave, [1600] * 40)
    assert [(e.label, e.onset, e.offset) for e in streamed] == [
        (e.label, pytest.approx(e.onset, abs=1e-6), pytest.approx(e.offset, abs=1e-6)) for e in want
    ]
    # Explicit beats the model: a global threshold, then per-class overrides.
    assert rt.classify(wave, events=EventOptions(threshold=0.5)).events == (
        plain.classify(wave, events=EventOptions(threshold=0.5)).events
    )
    mixed = EventOptions(thresholds={"toy_1": 0.9})
    assert rt.classify(wave, events=mixed).events == (
        plain.classify(wave, events=EventOptions(thresholds={**stored, "toy_1": 0.9})).events
    )


def test_resolve_orders_explicit_model_and_default_thresholds():
    model = [0.2, 0.3, 0.4]
    on, off, _ = EventOptions().resolve(["a", "b", "c"], model)
    assert on.tolist() == model and off.tolist() == model
    on, off, _ = EventOptions(thresholds={"b": (0.8, 0.6)}).resolve(["a", "b", "c"], model)
    assert on.tolist() == [0.2, 0.8, 0.4] and off.tolist() == [0.2, 0.6, 0.4]
    on, _, _ = EventOptions(threshold=0.9).resolve(["a", "b", "c"], model)
    assert on.tolist() == [0.9] * 3
    on, off, _ = EventOptions().resolve(["a", "b", "c"])
    assert on.tolist() == [0.5] * 3 == off.tolist()
    on, off, _ = EventOptions(off_threshold=0.1).resolve(["a", "b", "c"], model)
    assert on.tolist() == model and off.tolist() == [0.1] * 3
    with pytest.raises(
        InvalidOptionError, match=r"off threshold 0\.25 exceeds the on threshold 0\.2 of .a."
    ):
        EventOptions(off_threshold=0.25).resolve(["a", "b", "c"], model)
    with pytest.raises(InvalidOptionError, match="model thresholds must be 3 numbers"):
        EventOptions().resolve(["a", "b", "c"], [0.5, 0.5])
    with pytest.raises(InvalidOptionError, match=r"in \[0, 1\]"):
        EventOptions(off_threshold=1.5)


def test_write_thresholds_through_a_link_rewrites_the_target(toy, tmp_path):
    link = tmp_path / "link.onnx"
    link.symlink_to(toy)
    write_thresholds(link, {"toy_5": 0.1})
    assert link.is_symlink() and metadata_of(toy)["thresholds"] == {"toy_5": 0.1}
