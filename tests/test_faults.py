"""Fault injection: broken data, changed settings and hostile values end in our own one-line error,
never in a silent result or a traceback."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from roadseg.models.core.dataset_layouts import DatasetError, find_samples, read_road_mask
from roadseg.models.core.fileio import atomic_write_json, json_text
from roadseg.train.fit import get_args_parser, run_training
from tests.test_fit import fit_args


def relabel(root, tmp_path, value: int):
    """A copy of the synthetic set whose every label pixel is ``value``."""
    copy = tmp_path / "relabelled"
    shutil.copytree(root, copy)
    for label in copy.glob("gtFine/*/*/*_labelIds.png"):
        shape = cv2.imread(str(label), cv2.IMREAD_UNCHANGED).shape
        cv2.imwrite(str(label), np.full(shape, value, np.uint8))
    return copy


def test_all_ignored_labels_stop_training_in_one_line(synthetic_root, tmp_path):
    root = relabel(synthetic_root, tmp_path, 0)  # 0 = unlabeled: ignored in evaluation
    args = get_args_parser().parse_args(fit_args(root, tmp_path / "run", "--epochs", 1, "--batch-size", 2))
    with pytest.raises(Exception, match="no labelled pixel") as err:
        run_training(args)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "best.pt").exists()


def test_label_values_outside_the_dataset_are_refused(synthetic_root, tmp_path):
    root = relabel(synthetic_root, tmp_path, 200)
    sample = find_samples("cityscapes", root, "train")[0]
    with pytest.raises(DatasetError, match="label values 200 are not cityscapes classes"):
        read_road_mask(sample.label, "cityscapes")


def test_resume_with_changed_settings_is_refused(synthetic_root, tmp_path):
    out = tmp_path / "run"
    run_training(get_args_parser().parse_args(fit_args(synthetic_root, out, "--epochs", 1, "--batch-size", 2)))
    changed = get_args_parser().parse_args(fit_args(synthetic_root, out, "--epochs", 1, "--batch-size", 2,
                                                    "--dice-weight", 0.5, "--resume"))
    with pytest.raises(Exception, match=r"other settings \(--dice-weight 0.0 -> 0.5\)"):
        run_training(changed)
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"metrics.jsonl holds a bare {name}"))


def test_json_outputs_have_no_bare_nan(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"iou": float("nan"), "rows": [1.0, float("inf")]})
    assert json.loads(path.read_text()) == {"iou": None, "rows": [1.0, None]}
    assert json_text({"x": float("-inf")}, indent=None) == '{"x": null}'


def test_a_finished_model_is_not_overwritten_and_a_file_is_not_a_folder(synthetic_root, tmp_path):
    from roadseg.models.core.cli import ToolError

    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"an earlier model")
    args = get_args_parser().parse_args(fit_args(synthetic_root, out, "--epochs", 1, "--batch-size", 2))
    with pytest.raises(ToolError, match="already holds a trained model \\(best.pt\\).*--overwrite"):
        run_training(args)
    assert (out / "best.pt").read_bytes() == b"an earlier model"
    (tmp_path / "a_file").write_text("x")
    args = get_args_parser().parse_args(fit_args(synthetic_root, tmp_path / "a_file", "--epochs", 1))
    with pytest.raises(ToolError, match="is a file, not a folder"):
        run_training(args)


def test_written_files_get_the_umask_permissions_and_stale_temporaries_go(tmp_path):
    import os
    import subprocess
    import sys

    from roadseg.models.core.fileio import atomic_path, atomic_write_bytes

    old = os.umask(0o027)
    try:
        assert (atomic_write_bytes(tmp_path / "a.json", b"{}").stat().st_mode & 0o777) == 0o640
        with atomic_path(tmp_path / "v.mp4") as tmp:
            tmp.write_bytes(b"video")
        assert ((tmp_path / "v.mp4").stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.json.{dead.pid}.x1y2.tmp"  # what a writer killed mid-write leaves
    stale.write_bytes(b"half")
    live = tmp_path / f".a.json.{os.getppid()}.z3.tmp"  # a live process's write in progress is left alone
    live.write_bytes(b"busy")
    atomic_write_bytes(tmp_path / "a.json", b"[]")
    assert not stale.exists() and live.exists() and (tmp_path / "a.json").read_bytes() == b"[]"


@pytest.mark.slow
def test_empty_foreign_and_custom_op_models_are_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, write_onnx_info
    from tests.conftest import assert_one_line_error, run_script

    (tmp_path / "empty.onnx").write_bytes(b"")
    graph = helper.make_graph([helper.make_node("RoadOp", ["image"], ["logits"], domain="com.example")], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 32, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    write_onnx_info(model, ModelInfo(arch={"depth": 2}, meta={"input_size": [32, 64], "mean": list(IMAGENET_MEAN),
                                                               "std": list(IMAGENET_STD)}))
    onnx.save(model, str(tmp_path / "custom.onnx"))
    for backend in ("onnxruntime", "openvino"):
        assert_one_line_error(run_script("deploy/benchmark.py", "--model", tmp_path / "empty.onnx", "--backends",
                                         backend), "empty.onnx", "empty")
        assert_one_line_error(run_script("deploy/run.py", "--model", tmp_path / "empty.onnx", "--source", tmp_path,
                                         "--backend", backend), "empty.onnx")
    assert_one_line_error(run_script("deploy/benchmark.py", "--model", tmp_path / "custom.onnx", "--backends",
                                     "onnxruntime"), "custom.onnx", "cannot load it")
    assert_one_line_error(run_script("export/quantize_onnx.py", "--model", tmp_path / "custom.onnx", "--target",
                                     "onnxruntime"), "custom.onnx", "RoadOp")
