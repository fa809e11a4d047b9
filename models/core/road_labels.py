"""Road labels of every supported dataset, as lookup tables (pure numpy; deploy imports this, never torch).

Binary output everywhere: 1 = road, 0 = not road, 255 = ignore (never counted).
- Cityscapes (and our synthetic set, written with official ids): road = label id 7; every id
  whose label has ``ignoreInEval`` in the official table is ignored. The table comes from
  ``cityscapesscripts.helpers.labels``, never re-typed.
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


def cityscapes_road_id() -> int:
    from cityscapesscripts.helpers.labels import name2label

    return name2label["road"].id


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
    from cityscapesscripts.helpers.labels import labels

    road_id = cityscapes_road_id()
    for label in labels:
        if 0 <= label.id < 256:
            lut[label.id] = IGNORE if label.ignoreInEval else (ROAD if label.id == road_id else NOT_ROAD)
    return lut


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
