"""Road labels of every supported dataset, as lookup tables (pure numpy; deploy imports this, never torch).

Binary output everywhere: 1 = road, 0 = not road, 255 = ignore (never counted).
- Cityscapes (and our synthetic set, written with official ids): road = label id 7; every id
  whose label has ``ignoreInEval`` in the official table is ignored. The table below is the
  (name, id, ignoreInEval) columns of ``cityscapesscripts.helpers.labels``, kept here so that the
  run-time install needs no cityscapesscripts; a test asserts that it equals the official one.
- CamVid (11-class SegNet version): road = 3; 11 (Unlabelled) = ignore.

    from roadseg.models.core.road_labels import road_lut
    binary = road_lut("cityscapes")[label_ids]     # uint8 HxW in {0, 1, 255}
"""

from __future__ import annotations

import numpy as np

NOT_ROAD, ROAD, IGNORE = 0, 1, 255
DATASETS = ("synthetic", "cityscapes", "camvid")

CAMVID_ROAD = 3
CAMVID_IGNORE = 11
CAMVID_NUM_CLASSES = 11


# (name, id, ignoreInEval) of every label of cityscapesscripts.helpers.labels, in its order.
CITYSCAPES_LABELS = (
    ("unlabeled", 0, True), ("ego vehicle", 1, True), ("rectification border", 2, True), ("out of roi", 3, True),
    ("static", 4, True), ("dynamic", 5, True), ("ground", 6, True), ("road", 7, False), ("sidewalk", 8, False),
    ("parking", 9, True), ("rail track", 10, True), ("building", 11, False), ("wall", 12, False),
    ("fence", 13, False), ("guard rail", 14, True), ("bridge", 15, True), ("tunnel", 16, True),
    ("pole", 17, False), ("polegroup", 18, True), ("traffic light", 19, False), ("traffic sign", 20, False),
    ("vegetation", 21, False), ("terrain", 22, False), ("sky", 23, False), ("person", 24, False),
    ("rider", 25, False), ("car", 26, False), ("truck", 27, False), ("bus", 28, False), ("caravan", 29, True),
    ("trailer", 30, True), ("train", 31, False), ("motorcycle", 32, False), ("bicycle", 33, False),
    ("license plate", -1, True),
)
CITYSCAPES_ID = {name: label_id for name, label_id, _ in CITYSCAPES_LABELS}


def cityscapes_road_id() -> int:
    return CITYSCAPES_ID["road"]


def road_label(dataset: str) -> int:
    """The dataset's own id for road (what a raw label or prediction PNG holds)."""
    _check_dataset(dataset)
    return CAMVID_ROAD if dataset == "camvid" else cityscapes_road_id()


def road_lut(dataset: str) -> np.ndarray:
    """A 256-entry uint8 table mapping the dataset's raw label values to {0, 1, 255}."""
    _check_dataset(dataset)
    # Values the dataset does not define stay ignored rather than silently counting as not-road.
    lut = np.full(256, IGNORE, dtype=np.uint8)
    if dataset == "camvid":
        lut[:CAMVID_NUM_CLASSES] = NOT_ROAD
        lut[CAMVID_ROAD] = ROAD
        return lut
    road_id = cityscapes_road_id()
    for _, label_id, ignored in CITYSCAPES_LABELS:
        if 0 <= label_id < 256:
            lut[label_id] = IGNORE if ignored else (ROAD if label_id == road_id else NOT_ROAD)
    return lut


def defined_lut(dataset: str) -> np.ndarray:
    """A 256-entry bool table: which raw label values the dataset defines (CamVid 0-11, Cityscapes its ids)."""
    _check_dataset(dataset)
    defined = np.zeros(256, dtype=bool)
    if dataset == "camvid":
        defined[:CAMVID_IGNORE + 1] = True
    else:
        defined[[label_id for _, label_id, _ in CITYSCAPES_LABELS if 0 <= label_id < 256]] = True
    return defined


def describe_defined(dataset: str) -> str:
    return "0-11" if dataset == "camvid" else "the Cityscapes label ids 0-33"


def prediction_lut(dataset: str, encoding: str) -> np.ndarray:
    """Map a predicted mask PNG to {0, 1}: ``binary`` (1 = road) or ``dataset`` (the dataset's own ids)."""
    if encoding not in ("binary", "dataset"):
        raise ValueError(f"prediction encoding must be 'binary' or 'dataset', got {encoding!r}")
    lut = np.zeros(256, dtype=np.uint8)
    lut[ROAD if encoding == "binary" else road_label(dataset)] = ROAD
    return lut


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
