"""Property-based tests (hypothesis): the label mapping, the metrics, and the parsers of metadata and
checkpoints, on random input, give a result or our own one-line error, never anything else."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from roadseg.models.core.model_metadata import FORMAT, PREFIX, MetadataError, ModelInfo
from roadseg.models.core.road_labels import DATASETS, IGNORE, defined_lut, road_lut
from roadseg.models.core.road_metrics import confusion_matrix, road_metrics

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@given(st.sampled_from(DATASETS), arrays(np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 8))))
def test_road_lut_maps_every_value_to_road_not_road_or_ignore(dataset, label):
    mapped = road_lut(dataset)[label]
    assert set(np.unique(mapped)) <= {0, 1, IGNORE}
    assert (mapped[~defined_lut(dataset)[label]] == IGNORE).all()  # undefined values are never counted


@given(arrays(np.uint8, (6, 7), elements=st.integers(0, 1)),
       arrays(np.uint8, (6, 7), elements=st.sampled_from([0, 1, 255])))
def test_metrics_from_any_prediction_are_fractions_or_nan(pred, target):
    cm = confusion_matrix(pred, target)
    assert cm.sum() == (target != IGNORE).sum()
    for key, value in road_metrics(cm).items():
        if key in ("road_iou", "precision", "recall", "f1", "pixel_acc"):
            assert math.isnan(value) or 0.0 <= value <= 1.0, key


def props(meta, arch=None, **extra):
    return {PREFIX + "format": FORMAT, PREFIX + "arch": json.dumps(arch if arch is not None else {"depth": 2}),
            PREFIX + "meta": json.dumps(meta), **{PREFIX + k: v for k, v in extra.items()}}


@given(json_values, json_values, st.text(max_size=12), st.text(max_size=12))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_onnx_metadata_parser_returns_a_sane_model_or_our_error(meta, arch, classes, ignore_index):
    try:
        info = ModelInfo.from_props(props(meta, arch, classes=classes, ignore_index=ignore_index), "m.onnx")
    except MetadataError as err:
        assert "\n" not in str(err) and str(err).startswith("m.onnx")
        return
    height, width = info.input_size
    assert 8 <= height <= 8192 and 8 <= width <= 8192 and all(s > 0 for s in info.std)


@given(st.tuples(st.integers(-10**9, 10**9), st.integers(-10**9, 10**9)),
       st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4))
def test_input_size_and_std_outside_the_range_are_refused(size, std):
    meta = {"input_size": list(size), "mean": [0.5, 0.5, 0.5], "std": std}
    ok = all(8 <= v <= 8192 for v in size) and len(std) == 3 and all(math.isfinite(v) and v > 0 for v in std)
    if ok:
        assert ModelInfo.from_props(props(meta), "m").input_size == size
    else:
        with pytest.raises(MetadataError, match="^m: "):
            ModelInfo.from_props(props(meta), "m")


torch = pytest.importorskip("torch")


@given(st.dictionaries(st.sampled_from(["depth", "depth", "base_width", "norm", "up", "separable", "encoder_widths",
                                        "up_widths", "decoder_widths", "in_channels", "num_classes", "bogus"]),
                       json_values, max_size=5))
@settings(deadline=None, max_examples=60)
def test_checkpoint_arch_builds_or_is_refused_in_one_line(fields):
    from roadseg.models.checkpoint import CheckpointError, build_model
    from roadseg.models.unet import UNet

    arch = {**UNet.from_base_width(4, depth=2).arch(), **fields}
    try:
        model = build_model(arch, "c.pt")
    except CheckpointError as err:
        assert "\n" not in str(err) and str(err).startswith("c.pt")
        return
    assert sum(p.numel() for p in model.parameters()) <= 200_000_000
