from __future__ import annotations

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, name2label

from roadseg.models.core.road_labels import CITYSCAPES_LABELS, IGNORE, prediction_lut, road_lut
from roadseg.models.core.road_metrics import confusion_matrix, road_metrics


def test_our_cityscapes_table_is_the_official_one():
    from cityscapesscripts.helpers.labels import labels

    assert tuple((label.name, label.id, label.ignoreInEval) for label in labels) == CITYSCAPES_LABELS


def test_cityscapes_lut_follows_official_table():
    lut = road_lut("cityscapes")
    assert lut[name2label["road"].id] == 1
    for name in ("sidewalk", "car", "building", "sky"):
        assert lut[name2label[name].id] == 0, name
    for name in ("unlabeled", "ego vehicle", "parking", "rail track", "guard rail"):
        assert id2label[name2label[name].id].ignoreInEval
        assert lut[name2label[name].id] == IGNORE, name
    assert lut[200] == IGNORE  # an id the table does not define is never counted
    assert np.array_equal(road_lut("synthetic"), lut)


def test_camvid_lut():
    lut = road_lut("camvid")
    assert lut[3] == 1 and lut[11] == IGNORE
    assert all(lut[i] == 0 for i in range(11) if i != 3)
    assert lut[12] == IGNORE


def test_prediction_luts():
    assert prediction_lut("cityscapes", "dataset")[7] == 1 and prediction_lut("cityscapes", "dataset")[1] == 0
    assert prediction_lut("camvid", "dataset")[3] == 1
    assert prediction_lut("camvid", "binary")[1] == 1 and prediction_lut("camvid", "binary")[3] == 0
    with pytest.raises(ValueError, match="encoding"):
        prediction_lut("camvid", "rgb")


def test_metrics_by_hand_and_ignore_never_counted():
    target = np.array([[1, 1, 1, 0], [0, 0, 255, 255]], dtype=np.uint8)
    pred = np.array([[1, 1, 0, 1], [0, 0, 1, 0]], dtype=np.uint8)
    cm = confusion_matrix(pred, target)
    # tp = 2, fn = 1 (target 1 -> 0), fp = 1 (target 0 -> 1), tn = 2; ignored pixels dropped
    assert cm.tolist() == [[2, 1], [1, 2]]
    m = road_metrics(cm)
    assert m["road_iou"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["pixels"] == 6


def test_metrics_undefined_are_nan_not_zero():
    m = road_metrics(np.zeros((2, 2), dtype=np.int64))
    assert np.isnan(m["road_iou"]) and np.isnan(m["precision"])

