"""Road datasets for training and evaluation: Cityscapes, CamVid and the synthetic set.

Each item is ``(image float32 [3, H, W] normalised, mask int64 [H, W] in {0, 1, 255})``.
The synthetic set uses the Cityscapes layout and label ids; when its folder is missing it is
generated (the embedded default data: no download).

    from roadseg.train.road_datasets import build_dataset
    ds = build_dataset("camvid", "../shared/data/camvid", "val", EvalTransform((352, 480)))
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from roadseg.models.core.dataset_layouts import DatasetError, Sample, find_samples, read_rgb, read_road_mask
from roadseg.models.core.road_labels import DATASETS
from roadseg.train.paired_transforms import to_tv_tensors

DEFAULT_SYNTHETIC_PATH = Path("data/synthetic")
DEFAULT_SYNTHETIC_FRAMES = {"num_train": 160, "num_val": 40, "height": 256, "width": 512, "seed": 0}


class RoadDataset(Dataset):
    def __init__(self, dataset: str, samples: list[Sample], transform=None):
        self.dataset, self.samples, self.transform = dataset, samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int):
        """The raw pair: RGB uint8 HxWx3 and road mask uint8 HxW."""
        sample = self.samples[index]
        image = read_rgb(sample.image)
        mask = read_road_mask(sample.label, self.dataset, expected_hw=image.shape[:2])
        return image, mask

    def load_mask(self, sample: Sample):
        return read_road_mask(sample.label, self.dataset)

    def __getitem__(self, index: int):
        image, mask = to_tv_tensors(*self.load(index))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask


def ensure_synthetic(path: Path) -> Path:
    """Generate the default synthetic set at ``path`` unless it is there. It is written into a
    temporary sibling folder and renamed into place, so an interrupted generation never leaves a
    partial dataset that later runs would silently use."""
    if (path / "leftImg8bit").is_dir():
        return path
    import shutil
    import tempfile

    from roadseg.train.synthetic import write_dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write_dataset(staging, **DEFAULT_SYNTHETIC_FRAMES)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def build_dataset(dataset: str, data_path: str | Path | None, split: str, transform=None) -> RoadDataset:
    if dataset not in DATASETS:
        raise DatasetError(f"--dataset {dataset!r}: expected one of {DATASETS}")
    if data_path is None:
        if dataset != "synthetic":
            raise DatasetError(f"--dataset {dataset} needs --data-path (the folder holding the dataset)")
        data_path = ensure_synthetic(DEFAULT_SYNTHETIC_PATH)
    data_path = Path(data_path)
    if not data_path.is_dir():
        raise DatasetError(f"--data-path {data_path}: no such folder")
    return RoadDataset(dataset, find_samples(dataset, data_path, split), transform)


def add_split_arguments(group) -> None:
    """--train-split/--val-split/--holdout-drive, shared by every stage that trains (fit, prune, qat)."""
    group.add_argument("--train-split", default="train",
                       help="split name or expression, e.g. train:drive!=0006R0 (see models/core/dataset_layouts.py)")
    group.add_argument("--val-split", default="val", help="split name or expression, e.g. train+val:drive=0006R0")
    group.add_argument("--holdout-drive", default=None, metavar="DRIVE",
                       help="validate on every train+val frame of this drive and train on the other drives' train "
                            "frames (CamVid: 0006R0), so that best.pt is chosen on a road the model has not seen "
                            "and val stays an unseen in-sequence set; overrides --train-split/--val-split")


def resolve_splits(args) -> None:
    """Turn --holdout-drive into the two split expressions it stands for (in place)."""
    if getattr(args, "holdout_drive", None):
        args.train_split = f"train:drive!={args.holdout_drive}"
        args.val_split = f"train+val:drive={args.holdout_drive}"


def collate_keep_sizes(batch):
    """Stack when every mask has one size (the usual case), else fall back to lists."""
    images = torch.stack([image for image, _ in batch])
    masks = [mask for _, mask in batch]
    if len({tuple(mask.shape) for mask in masks}) == 1:
        return images, torch.stack(masks)
    return images, masks
