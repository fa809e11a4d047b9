"""Road IoU from train/evaluate.py equals the official Cityscapes evaluator's road IoU."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from roadseg.models.checkpoint import load_model, save_checkpoint
from roadseg.models.core.dataset_layouts import find_samples, read_label_ids
from roadseg.models.unet import UNet
from roadseg.train.evaluate import evaluate, evaluate_prediction_folder
from roadseg.train.paired_transforms import EvalTransform
from roadseg.train.road_datasets import build_dataset
from tests.conftest import assert_one_line_error, run_script, shared_data


def official_road_iou(pred_paths, gt_paths) -> float:
    if not hasattr(np, "in1d"):  # removed in numpy 2.4; the official evaluator still calls it
        np.in1d = np.isin
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as official

    args = official.args
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    results = official.evaluateImgLists([str(p) for p in pred_paths], [str(p) for p in gt_paths], args)
    return results["classScores"]["road"]


def write_noisy_label_id_predictions(root, split, out_dir, seed):
    """Predictions in Cityscapes label ids: the ground truth with random blocks of other ids
    (road predicted on non-road, other classes on road, ignored classes predicted too)."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_paths, gt_paths = [], []
    for sample in find_samples("cityscapes", root, split):
        label = read_label_ids(sample.label)
        pred = label.copy()
        h, w = pred.shape
        for _ in range(12):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            pred[y: y + rng.integers(2, h // 3), x: x + rng.integers(2, w // 3)] = rng.choice([0, 7, 8, 26, 6, 23])
        path = out_dir / f"{sample.frame_id}_pred.png"
        cv2.imwrite(str(path), pred)
        pred_paths.append(path)
        gt_paths.append(sample.label)
    return pred_paths, gt_paths


def test_road_iou_equals_official_evaluator_on_synthetic(synthetic_root, tmp_path):
    pred_paths, gt_paths = write_noisy_label_id_predictions(synthetic_root, "val", tmp_path / "pred", seed=0)
    dataset = build_dataset("synthetic", synthetic_root, "val")
    cm, per_image = evaluate_prediction_folder(dataset, tmp_path / "pred", "dataset", progress=False)
    ours = cm[1, 1] / (cm[1, 1] + cm[0, 1] + cm[1, 0])
    official = official_road_iou(pred_paths, gt_paths)
    assert 0.2 < official < 0.999  # the noise must make the comparison non-trivial
    assert abs(ours - official) < 1e-9
    assert len(per_image) == len(pred_paths)


@pytest.mark.slow
def test_road_iou_equals_official_evaluator_on_real_cityscapes_frame(tmp_path):
    root = shared_data("cityscapes_sample")
    pred_paths, gt_paths = write_noisy_label_id_predictions(root, "val", tmp_path / "pred", seed=1)
    result = run_script("train/evaluate.py", "--pred-dir", tmp_path / "pred", "--pred-labels", "dataset",
                        "--dataset", "cityscapes", "--data-path", root, "--split", "val",
                        "--json", tmp_path / "val.json")
    assert result.returncode == 0, result.stderr
    ours = json.loads((tmp_path / "val.json").read_text())["metrics"]["road_iou"]
    official = official_road_iou(pred_paths, gt_paths)
    assert 0.2 < official < 0.999
    assert abs(ours - official) < 1e-9


@pytest.mark.slow
def test_checkpoint_and_saved_predictions_agree(synthetic_root, tmp_path):
    """Evaluating a checkpoint and evaluating the masks it saved give the same confusion matrix,
    and the matrix counts exactly the non-ignored label pixels of the split."""
    result = run_script("models/init_checkpoint.py", "--out", tmp_path, "--base-width", "4", "--depth", "3",
                        "--img-size", "32", "64")
    assert result.returncode == 0, result.stderr
    # An untrained head predicts one class everywhere; bias it to the median logit gap so that
    # the predictions (and so their order across frames) actually vary.
    model, ckpt = load_model(tmp_path / "init.pt")
    dataset = build_dataset("synthetic", synthetic_root, "val", EvalTransform((32, 64)))
    with torch.no_grad():
        logits = model(torch.stack([dataset[i][0] for i in range(len(dataset))]))
        model.outc.bias[1] += (logits[:, 0] - logits[:, 1]).median()
    ckpt["state_dict"] = model.state_dict()
    save_checkpoint(tmp_path / "init.pt", ckpt)
    common = ("--dataset", "synthetic", "--data-path", synthetic_root, "--split", "val")
    result = run_script("train/evaluate.py", "--ckpt", tmp_path / "init.pt", *common, "--workers", "0",
                        "--per-image", "--save-pred", tmp_path / "pred", "--json", tmp_path / "ckpt.json")
    assert result.returncode == 0, result.stderr
    assert "road_iou" in result.stdout
    from_ckpt = json.loads((tmp_path / "ckpt.json").read_text())
    result = run_script("train/evaluate.py", "--pred-dir", tmp_path / "pred", *common,
                        "--json", tmp_path / "pred.json")
    assert result.returncode == 0, result.stderr
    from_masks = json.loads((tmp_path / "pred.json").read_text())
    assert from_ckpt["confusion_matrix"] == from_masks["confusion_matrix"]
    dataset = build_dataset("synthetic", synthetic_root, "val")
    labelled = sum(int((dataset.load_mask(s) != 255).sum()) for s in dataset.samples)
    assert np.sum(from_ckpt["confusion_matrix"]) == labelled
    assert len(from_ckpt["per_image"]) == len(dataset)
    assert min(np.sum(from_ckpt["confusion_matrix"], axis=0)) > 0  # both classes predicted
    assert all(0.0 <= row["pixel_acc"] <= 1.0 for row in from_ckpt["per_image"])


def test_mixed_size_batches_resize_each_prediction_to_its_own_label():
    torch.manual_seed(0)
    model = UNet.from_base_width(4, depth=2).eval()
    images = torch.randn(2, 3, 16, 32)
    masks = [torch.randint(0, 2, (24, 40)), torch.randint(0, 2, (16, 32))]
    mixed, _ = evaluate(model, [(images, masks)], torch.device("cpu"), progress=False)
    separate = sum(evaluate(model, [(images[i: i + 1], masks[i][None])], torch.device("cpu"), progress=False)[0]
                   for i in range(2))
    assert np.array_equal(mixed, separate) and mixed.sum() == 24 * 40 + 16 * 32


@pytest.mark.slow
def test_prediction_folder_errors_are_one_line(synthetic_root, tmp_path):
    pred_dir = tmp_path / "pred"
    write_noisy_label_id_predictions(synthetic_root, "val", pred_dir, seed=2)
    first = sorted(pred_dir.iterdir())[0]
    shutil.move(first, tmp_path / first.name)
    common = ("--dataset", "synthetic", "--data-path", synthetic_root, "--split", "val")
    result = run_script("train/evaluate.py", "--pred-dir", pred_dir, *common)
    assert_one_line_error(result, "no prediction for frame", first.name.replace("_pred.png", ""))

    small = cv2.imread(str(tmp_path / first.name), cv2.IMREAD_UNCHANGED)[::2, ::2]
    cv2.imwrite(str(first), small)
    result = run_script("train/evaluate.py", "--pred-dir", pred_dir, *common)
    assert_one_line_error(result, first.name, "they must match")


@pytest.mark.slow
@pytest.mark.parametrize("size", [("30", "64")])
def test_image_size_not_fitting_the_model_is_one_line(synthetic_root, tmp_path, size):
    assert run_script("models/init_checkpoint.py", "--out", tmp_path, "--base-width", "4", "--depth", "3",
                      "--img-size", "32", "64").returncode == 0
    result = run_script("train/evaluate.py", "--ckpt", tmp_path / "init.pt", "--dataset", "synthetic",
                        "--data-path", synthetic_root, "--img-size", *size)
    assert_one_line_error(result, "--img-size", "not a multiple of 8")
