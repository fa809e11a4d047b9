from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels

from roadseg.models.core.dataset_layouts import DatasetError, find_samples, read_label_ids
from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD
from roadseg.train.paired_transforms import EvalTransform, to_tv_tensors, train_transform
from roadseg.train.road_datasets import build_dataset
from tests.conftest import shared_data


def test_real_cityscapes_frame_matches_official_train_ids():
    root = shared_data("cityscapes_sample")
    dataset = build_dataset("cityscapes", root, "val")
    image, mask = dataset.load(0)
    label_ids = read_label_ids(dataset.samples[0].label)
    ignored_ids = [label.id for label in labels if label.ignoreInEval]
    assert image.shape[:2] == mask.shape
    assert np.array_equal(mask == 1, label_ids == 7)
    assert np.array_equal(mask == 255, np.isin(label_ids, ignored_ids))
    assert 0.05 < (mask == 1).mean() < 0.9
    # labelTrainIds (road = 0, 255 = ignore) came from the official scripts, but this fixture's
    # two files were downscaled separately, so they agree on all but a few edge pixels.
    train_ids_path = str(dataset.samples[0].label).replace("_labelIds.png", "_labelTrainIds.png")
    train_ids = read_label_ids(train_ids_path)
    assert ((mask == 1) == (train_ids == 0)).mean() > 0.995
    assert ((mask == 255) == (train_ids == 255)).mean() > 0.99


def test_real_camvid_mapping():
    root = shared_data("camvid")
    dataset = build_dataset("camvid", root, "val")
    assert len(dataset) == 101
    raw = read_label_ids(dataset.samples[0].label)
    _, mask = dataset.load(0)
    assert np.array_equal(mask == 1, raw == 3)
    assert np.array_equal(mask == 255, raw == 11)
    assert set(np.unique(mask)) <= {0, 1, 255}


def test_layout_errors_name_the_folder_or_file(synthetic_root, tmp_path):
    with pytest.raises(DatasetError, match="looks like the cityscapes layout, try --dataset cityscapes"):
        find_samples("camvid", synthetic_root, "val")
    with pytest.raises(DatasetError, match="no such folder"):
        build_dataset("cityscapes", tmp_path / "absent", "val")

    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    labels = sorted((root / "gtFine" / "val").rglob("*_labelIds.png"))
    labels[0].unlink()
    with pytest.raises(DatasetError, match=f"{labels[0].name.replace('_gtFine_labelIds.png', '')}.*no label"):
        find_samples("cityscapes", root, "val")

    # a label of the wrong size is refused when it is read, naming the file
    label = cv2.imread(str(labels[1]), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(labels[1]), cv2.resize(label, (label.shape[1] // 2, label.shape[0] // 2)))
    shutil.copy(labels[1], labels[0])  # restore a label for the first frame (right size not needed)
    dataset = build_dataset("cityscapes", root, "val")
    bad = next(i for i, s in enumerate(dataset.samples) if s.label == labels[1])
    with pytest.raises(DatasetError, match=f"{labels[1].name}: label is .* but its image is"):
        dataset.load(bad)

    for image in (root / "leftImg8bit" / "train").rglob("*.png"):
        image.unlink()
    with pytest.raises(DatasetError, match="empty split"):
        find_samples("cityscapes", root, "train")


def _denormalise_first_channel(image: torch.Tensor) -> torch.Tensor:
    return image[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]


def test_train_transform_keeps_image_and_mask_paired():
    """Encode the mask into the image; after random scale, crop, pad and flip they must agree."""
    mask = np.zeros((256, 512), dtype=np.uint8)
    mask[128:, :300] = 1  # road in the lower left only: a missed flip would show
    mask[:40, 400:] = 255
    image = np.repeat(np.where(mask == 1, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    torch.manual_seed(0)
    transform = train_transform((128, 256), scale_range=(0.4, 1.6), jitter=0.0)
    saw_padding = False
    mirror_gap = 0.0
    for _ in range(20):
        out_image, out_mask = transform(*to_tv_tensors(image, mask))
        assert out_image.shape == (3, 128, 256) and out_mask.shape == (128, 256)
        assert out_mask.dtype == torch.int64
        assert set(out_mask.unique().tolist()) <= {0, 1, 255}  # nearest: no blended label values
        road_in_image = _denormalise_first_channel(out_image) > 0.5
        labelled = out_mask != 255
        # they agree except within a pixel of region edges (bilinear image vs floor-indexed nearest
        # mask resize); a mask that missed the image's flip or crop agrees far less
        agree = (road_in_image == (out_mask == 1))[labelled].float().mean()
        mirrored = (road_in_image.flip(-1) == (out_mask == 1))[labelled].float().mean()
        assert agree > 0.95
        mirror_gap = max(mirror_gap, float(agree - mirrored))
        saw_padding |= bool((out_mask == 255).sum() > (out_mask.numel() * 0.2))
    assert saw_padding  # scales below 1 must pad with the ignore label
    assert mirror_gap > 0.2  # the check above does catch a mask that is not flipped with its image


def test_eval_transform_resizes_image_only(synthetic_root):
    dataset = build_dataset("synthetic", synthetic_root, "val", EvalTransform((32, 64)))
    image, mask = dataset[0]
    assert image.shape == (3, 32, 64) and mask.shape == (64, 128)
    assert image.dtype == torch.float32 and mask.dtype == torch.int64
