"""Zoo names resolve to hash-checked files; predict writes one mask per image, named after it."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from roadseg.models.core.cli import ToolError
from roadseg.models.core.fileio import file_sha256
from roadseg.models.core.zoo import MANIFEST_FORMAT, ZooError, resolve_model
from tests.conftest import assert_one_line_error, exported_onnx, run_script

SIZE = (32, 64)


@pytest.fixture(scope="module")
def tiny_onnx(synthetic_root, tmp_path_factory):
    return exported_onnx(tmp_path_factory.mktemp("tiny"), synthetic_root, SIZE)


def make_zoo(folder, onnx_path):
    folder.mkdir(exist_ok=True)
    shutil.copy(onnx_path, folder / "road-tiny.onnx")
    manifest = {"format": MANIFEST_FORMAT, "models": {
        "road-tiny": {"files": {"onnx": {"file": "road-tiny.onnx", "sha256": file_sha256(folder / "road-tiny.onnx")}}},
        "cityscapes-road": {"status": "recipe only, not trained yet", "recipe": "torchrun ... roadseg train",
                            "files": {}},
    }}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.slow
def test_zoo_names_resolve_only_with_matching_hash(tiny_onnx, tmp_path):
    zoo = make_zoo(tmp_path / "zoo", tiny_onnx)
    assert resolve_model("road-tiny", zoo_dir=zoo) == zoo / "road-tiny.onnx"
    assert resolve_model(str(tiny_onnx), zoo_dir=zoo) == tiny_onnx  # a path stays a path
    with pytest.raises(ZooError, match="not a zoo model|nor a zoo model"):
        resolve_model("road-huge", zoo_dir=zoo)
    with pytest.raises(ZooError, match="recipe"):
        resolve_model("cityscapes-road", zoo_dir=zoo)
    with pytest.raises(ZooError, match="checkpoint"):
        resolve_model("road-tiny", kind="checkpoint", zoo_dir=zoo)
    with open(zoo / "road-tiny.onnx", "ab") as file:
        file.write(b"\0")
    with pytest.raises(ZooError, match="damaged or was replaced"):
        resolve_model("road-tiny", zoo_dir=zoo)
    (zoo / "manifest.json").write_text("{not json")
    with pytest.raises(ToolError, match="not a readable zoo manifest"):
        resolve_model("road-tiny", zoo_dir=zoo)


def write_images(folder, count, shape=(50, 70, 3)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"frame_{i}.{'png' if i % 2 else 'jpg'}"), rng.integers(0, 255, shape, np.uint8))


@pytest.mark.slow
def test_predict_writes_one_mask_per_image_named_after_it(tiny_onnx, tmp_path):
    write_images(tmp_path / "in", 3)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    result = run_script("deploy/predict.py", "--model", tiny_onnx, "--source", tmp_path / "in", "--output",
                        tmp_path / "out", "--overlay")
    assert result.returncode == 0, result.stderr[-1500:]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([f"frame_{i}.png" for i in range(3)] + [f"frame_{i}_overlay.png" for i in range(3)])
    for i in range(3):
        mask = cv2.imread(str(tmp_path / "out" / f"frame_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (50, 70) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        overlay = cv2.imread(str(tmp_path / "out" / f"frame_{i}_overlay.png"), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == (50, 70, 3)
    # one image to one file, 0/1 values, and the mask is the model's argmax at the image's size
    single = tmp_path / "in" / "frame_1.png"
    result = run_script("deploy/predict.py", "--model", tiny_onnx, "--source", single, "--output",
                        tmp_path / "road.png", "--mask-values", "0-1")
    assert result.returncode == 0, result.stderr[-1500:]
    mask01 = cv2.imread(str(tmp_path / "road.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(mask01 * 255, cv2.imread(str(tmp_path / "out" / "frame_1.png"), cv2.IMREAD_UNCHANGED))
    # an existing result is kept unless --overwrite
    before = (tmp_path / "road.png").read_bytes()
    refused = run_script("deploy/predict.py", "--model", tiny_onnx, "--source", single, "--output",
                         tmp_path / "road.png")
    assert_one_line_error(refused, "already exist", "--overwrite")
    assert (tmp_path / "road.png").read_bytes() == before


@pytest.mark.slow
def test_predict_bad_inputs_are_one_line(tiny_onnx, tmp_path):
    write_images(tmp_path / "in", 2)
    assert_one_line_error(run_script("deploy/predict.py", "--model", tiny_onnx, "--source", tmp_path / "in",
                                     "--output", tmp_path / "one.png"), "single file takes a single")
    assert_one_line_error(run_script("deploy/predict.py", "--model", "no-such-model", "--source", tmp_path / "in",
                                     "--output", tmp_path / "o"), "no-such-model")
    assert_one_line_error(run_script("deploy/predict.py", "--model", tiny_onnx, "--source", tmp_path / "nothing",
                                     "--output", tmp_path / "o"), "no such file or folder")


def test_recipe_only_names_say_how_they_are_made_and_never_hide_a_trained_model(tmp_path):
    from roadseg.export.zoo_publish import get_args_parser, main

    zoo = tmp_path / "zoo"
    recipe = "bash train/results/cityscapes_zoo.sh /data/cityscapes runs/cs"
    args = get_args_parser().parse_args(["--name", "cityscapes-road", "--recipe", recipe, "--data", "Cityscapes",
                                         "--zoo", str(zoo)])
    assert main(args) == 0
    with pytest.raises(ZooError, match="not trained yet.*cityscapes_zoo.sh"):
        resolve_model("cityscapes-road", zoo_dir=zoo)
    manifest = json.loads((zoo / "manifest.json").read_text())
    manifest["models"]["cityscapes-road"]["files"] = {"onnx": {"file": "x.onnx", "sha256": "0" * 64}}
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ToolError, match="already holds trained files"):
        main(get_args_parser().parse_args(["--name", "cityscapes-road", "--recipe", recipe, "--data", "x",
                                           "--zoo", str(zoo)]))
    with pytest.raises(ToolError, match="--ckpt and --onnx are both needed"):
        main(get_args_parser().parse_args(["--name", "camvid-x", "--data", "x", "--zoo", str(zoo)]))


def test_int8_names_resolve_to_the_ir_with_both_files_hash_checked(tiny_onnx, tmp_path):
    zoo = make_zoo(tmp_path / "zoo", tiny_onnx)
    (zoo / "road-tiny-int8.xml").write_text("<net/>")
    (zoo / "road-tiny-int8.bin").write_bytes(b"\1\2\3")
    with pytest.raises(ZooError, match="without a trained openvino_int8 file"):
        resolve_model("road-tiny-int8", zoo_dir=zoo)
    manifest = json.loads((zoo / "manifest.json").read_text())
    manifest["models"]["road-tiny"]["files"]["openvino_int8"] = {
        "file": "road-tiny-int8.xml", "sha256": file_sha256(zoo / "road-tiny-int8.xml"),
        "weights": {"file": "road-tiny-int8.bin", "sha256": file_sha256(zoo / "road-tiny-int8.bin")}}
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    assert resolve_model("road-tiny-int8", zoo_dir=zoo) == zoo / "road-tiny-int8.xml"
    assert resolve_model("road-tiny", zoo_dir=zoo) == zoo / "road-tiny.onnx"
    (zoo / "road-tiny-int8.bin").write_bytes(b"\1\2\4")  # the weights, not the .xml, were swapped
    with pytest.raises(ZooError, match="road-tiny-int8.bin.*damaged or was replaced"):
        resolve_model("road-tiny-int8", zoo_dir=zoo)


@pytest.mark.slow
def test_publish_refuses_an_ir_that_is_not_int8_of_the_checkpoint(synthetic_root, tmp_path):
    ov = pytest.importorskip("openvino")
    from roadseg.export.zoo_publish import get_args_parser, main

    onnx_path = exported_onnx(tmp_path / "model", synthetic_root, SIZE)
    ov.save_model(ov.Core().read_model(str(onnx_path)), str(tmp_path / "fp32.xml"))  # an FP32 IR of it
    args = get_args_parser().parse_args([
        "--name", "road-tiny", "--ckpt", str(onnx_path.parent / "init.pt"), "--onnx", str(onnx_path),
        "--openvino-int8", str(tmp_path / "fp32.xml"), "--data", "synthetic", "--zoo", str(tmp_path / "zoo")])
    with pytest.raises(ToolError, match="is fp32 .*expected INT8"):
        main(args)
    assert not (tmp_path / "zoo").exists()  # nothing published


@pytest.mark.slow
def test_publish_ships_an_int8_ir_beside_the_model_and_a_republish_without_it_removes_it(synthetic_root, tmp_path):
    ov = pytest.importorskip("openvino")
    from roadseg.export.zoo_publish import get_args_parser, main

    onnx_path = exported_onnx(tmp_path / "model", synthetic_root, SIZE)
    ir = ov.Core().read_model(str(onnx_path))  # an IR of this model labelled INT8 (publish reads only its metadata)
    ir.set_rt_info("int8-ov-ptq", ["framework", "roadseg.precision"])
    ov.save_model(ir, str(tmp_path / "model_int8_ov.xml"))
    zoo = tmp_path / "zoo"
    base = ["--name", "road-tiny", "--ckpt", str(onnx_path.parent / "init.pt"), "--onnx", str(onnx_path),
            "--data", "synthetic", "--zoo", str(zoo)]
    int8 = ["--openvino-int8", str(tmp_path / "model_int8_ov.xml")]
    # a report that cannot be read stops the publish before any file is copied
    with pytest.raises(ToolError, match="--bench"):
        main(get_args_parser().parse_args([*base, *int8, "--bench", str(tmp_path / "missing.json")]))
    assert not zoo.exists()
    with pytest.raises(ToolError, match="kept for the INT8 IRs"):
        main(get_args_parser().parse_args(["--name", "road-tiny-int8", *base[2:], *int8]))
    assert main(get_args_parser().parse_args([*base, *int8])) == 0
    record = json.loads((zoo / "manifest.json").read_text())["models"]["road-tiny"]["files"]["openvino_int8"]
    assert record["file"] == "road-tiny-int8.xml" and record["weights"]["file"] == "road-tiny-int8.bin"
    assert record["weights"]["sha256"] == file_sha256(tmp_path / "model_int8_ov.bin")
    assert resolve_model("road-tiny-int8", zoo_dir=zoo) == zoo / "road-tiny-int8.xml"
    assert main(get_args_parser().parse_args(base)) == 0  # published again, without the IR
    assert sorted(p.name for p in zoo.iterdir()) == ["manifest.json", "road-tiny.onnx", "road-tiny.pt"]
    with pytest.raises(ZooError, match="openvino_int8"):
        resolve_model("road-tiny-int8", zoo_dir=zoo)
