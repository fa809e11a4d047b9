"""export/to_fp16.py: model_fp32.onnx -> model_fp16.onnx with ModelOpt AutoCast (onnxconverter-common only when AutoCast
cannot be imported), input and output kept float32, the roadseg metadata carried with precision "fp16", behind the
parity gate against the FP32 file (onnxruntime CPU, real validation images).

The in-process tests use a one-convolution ONNX; the subprocess tests (slow) convert a small exported U-Net the way a
user does. The TensorRT side of the FP16 file (TensorRT 11.x builds FP16 engines only from it) is in
tests/test_tensorrt_build.py.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import roadseg.export.to_fp16 as to_fp16
from roadseg.export.onnx_info import read_onnx_info
from roadseg.export.parity import ParityError
from roadseg.models.core.cli import ToolError
from tests.conftest import assert_one_line_error, exported_onnx, run_script
from tests.test_tensorrt_build import INFO, tiny_onnx


def run_main(*argv: str) -> int:
    return to_fp16.main(to_fp16.get_args_parser().parse_args([str(a) for a in argv]))


def cpu_logits(model, batch: np.ndarray) -> np.ndarray:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, {"image": batch})[0]


# the conversion ---------------------------------------------------------------------------------------------------
def test_autocast_converts_keeping_input_and_output_float32(tmp_path):
    fp32 = tiny_onnx(tmp_path / "model_fp32.onnx")
    batch = np.random.default_rng(0).standard_normal((1, 3, 64, 128)).astype(np.float32)
    proto, tool = to_fp16.convert_to_fp16(fp32, [batch])
    assert tool["tool"] == to_fp16.AUTOCAST and tool["keep_io_types"] is True
    assert to_fp16.io_types(proto) == {"image": "FLOAT", "logits": "FLOAT"}
    counts = to_fp16.precision_counts(proto)
    assert counts["nodes_by_output_type"] == {"FLOAT16": 1} and counts["initializers_by_type"] == {"FLOAT16": 1}
    logits = cpu_logits(proto, batch)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, cpu_logits(fp32, batch), atol=1e-2)


def test_keep_fp32_keeps_that_op_type_in_fp32(tmp_path):
    fp32 = tiny_onnx(tmp_path / "model_fp32.onnx")
    proto, tool = to_fp16.convert_to_fp16(fp32, [np.zeros((1, 3, 64, 128), np.float32)], keep_fp32=["Conv"])
    assert tool["op_types_kept_fp32"] == ["Conv"]
    assert to_fp16.precision_counts(proto)["nodes_by_output_type"] == {"FLOAT": 1}


def test_onnxconverter_common_only_when_autocast_cannot_be_imported(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "modelopt.onnx.autocast", None)  # `from modelopt.onnx import autocast` fails
    fp32 = tiny_onnx(tmp_path / "model_fp32.onnx")
    proto, tool = to_fp16.convert_to_fp16(fp32, [np.zeros((1, 3, 64, 128), np.float32)])
    assert tool["tool"] == to_fp16.FALLBACK and "AutoCast could not be imported" in tool["why"]
    assert "falling back to onnxconverter-common" in capsys.readouterr().err
    assert to_fp16.io_types(proto) == {"image": "FLOAT", "logits": "FLOAT"}
    assert to_fp16.precision_counts(proto)["initializers_by_type"] == {"FLOAT16": 1}


def test_an_autocast_failure_is_one_line_not_a_silent_fallback(tmp_path, monkeypatch):
    from modelopt.onnx import autocast

    def broken(**kwargs):
        raise ValueError("Input shape from 'image' does not match\nprovided input shape")

    monkeypatch.setattr(autocast, "convert_to_mixed_precision", broken)
    with pytest.raises(ToolError) as caught:
        to_fp16.convert_to_fp16(tiny_onnx(tmp_path / "m.onnx"), [np.zeros((1, 3, 64, 128), np.float32)])
    assert "AutoCast could not convert it: Input shape from 'image' does not match provided" in str(caught.value)
    assert "\n" not in str(caught.value)


# the command, in process ------------------------------------------------------------------------------------------
def test_main_writes_the_fp16_file_with_metadata_and_report(tmp_path, synthetic_root):
    fp32 = tiny_onnx(tmp_path / "model_fp32.onnx")
    assert run_main("--model", fp32, "--data-path", synthetic_root, "--parity-images", 2, "--calib-images", 2) == 0
    fp16 = tmp_path / "model_fp16.onnx"
    info = read_onnx_info(fp16)
    assert info.precision == "fp16" and info.source == to_fp16.sha256_hex(fp32.read_bytes())
    assert (info.arch, info.meta) == (INFO.arch, INFO.meta)
    settings = json.loads(info.extra["fp16"])
    assert settings["tool"] == to_fp16.AUTOCAST and settings["calibration_images"] == 2
    report = json.loads((tmp_path / "model_fp16_report.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["images"] == 2
    assert report["parity"]["thresholds"] == {"min_agreement_percent": 98.0, "max_abs_iou_delta_points": 0.3}
    assert report["io_types"] == {"image": "FLOAT", "logits": "FLOAT"}


def test_a_failed_gate_writes_only_the_failed_report_and_keeps_the_good_file(tmp_path, synthetic_root, monkeypatch):
    fp32 = tiny_onnx(tmp_path / "model_fp32.onnx")
    (tmp_path / "model_fp16.onnx").write_bytes(b"the last good file")
    real_compare = to_fp16.compare

    def worse(reference, candidate, images):
        return {**real_compare(reference, candidate, images), "agreement_percent": 90.0}

    monkeypatch.setattr(to_fp16, "compare", worse)
    with pytest.raises(ParityError) as caught:
        run_main("--model", fp32, "--data-path", synthetic_root, "--parity-images", 1, "--calib-images", 1,
                 "--overwrite")
    assert "class agreement 90.000% < 98.0%" in str(caught.value)
    assert (tmp_path / "model_fp16.onnx").read_bytes() == b"the last good file"
    failed = json.loads((tmp_path / "model_fp16_failed_report.json").read_text())
    assert failed["parity"]["passed"] is False and not (tmp_path / "model_fp16_report.json").exists()


def test_main_refuses_what_it_cannot_convert_before_any_work(tmp_path):
    with pytest.raises(ToolError, match="no such file"):
        run_main("--model", tmp_path / "absent.onnx")
    qdq = tiny_onnx(tmp_path / "model_int8_qat.onnx", INFO.with_changes(precision="int8-qat-qdq"))
    with pytest.raises(ToolError, match="is int8-qat-qdq; the FP16 conversion starts from the FP32"):
        run_main("--model", qdq)
    already = tiny_onnx(tmp_path / "model_fp16.onnx", INFO.with_changes(precision="fp16"))
    with pytest.raises(ToolError, match="is fp16"):
        run_main("--model", already)
    fp32 = tiny_onnx(tmp_path / "model_fp32.onnx")
    with pytest.raises(ToolError, match="already exists; pass --overwrite"):
        run_main("--model", fp32)  # model_fp16.onnx is there (written above)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ToolError, match="is a file, not a folder"):
        run_main("--model", fp32, "--out", tmp_path / "a_file" / "sub")


# the command, as a user runs it (subprocesses) --------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory, synthetic_root):
    return exported_onnx(tmp_path_factory.mktemp("fp16"), synthetic_root, (64, 128))


@pytest.mark.slow
def test_fp16_of_an_exported_unet_passes_the_gate_and_runs_on_float32(exported, synthetic_root):
    out = exported.parent / "fp16"
    result = run_script("export/to_fp16.py", "--model", exported, "--data-path", synthetic_root, "--out", out,
                        "--parity-images", 4, "--calib-images", 6)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "parity gate passed" in result.stdout and "parity on 4 images: agreement" in result.stderr
    fp16 = out / "model_fp16.onnx"
    report = json.loads((out / "model_fp16_report.json").read_text())
    parity = report["parity"]
    assert parity["passed"] and parity["agreement_percent"] >= 98.0 and abs(parity["road_iou_delta_points"]) <= 0.3
    assert report["conversion"]["tool"] == to_fp16.AUTOCAST and report["bytes"]["fp16"] < report["bytes"]["fp32"]
    assert report["conversion"]["nodes_by_output_type"].get("FLOAT16", 0) > 0
    info = read_onnx_info(fp16)
    assert info.precision == "fp16" and info.input_size == (64, 128)
    batch = np.random.default_rng(1).standard_normal((2, 3, 64, 128)).astype(np.float32)  # dynamic batch kept
    logits = cpu_logits(fp16, batch)
    assert logits.dtype == np.float32 and logits.shape == (2, 2, 64, 128)

    again = run_script("export/to_fp16.py", "--model", exported, "--data-path", synthetic_root, "--out", out)
    assert_one_line_error(again, "model_fp16.onnx", "already exists", "--overwrite")


@pytest.mark.slow
def test_an_fp16_model_runs_in_deploy_like_the_fp32_one(exported, synthetic_root, tmp_path):
    """The run time opens model_fp16.onnx as any model (metadata, float32 batch in, float32 logits out)."""
    from roadseg.deploy.backends import open_backend

    result = run_script("export/to_fp16.py", "--model", exported, "--data-path", synthetic_root, "--out", tmp_path,
                        "--parity-images", 2, "--calib-images", 2)
    assert result.returncode == 0, result.stderr[-2000:]
    with_fp16 = open_backend(tmp_path / "model_fp16.onnx", providers=["CPUExecutionProvider"])
    with_fp32 = open_backend(exported, providers=["CPUExecutionProvider"])
    assert with_fp16.describe()["precision"] == "fp16" and with_fp16.info.input_size == with_fp32.info.input_size
    batch = np.random.default_rng(2).standard_normal((1, 3, 64, 128)).astype(np.float32)
    agreement = (with_fp16.infer(batch).argmax(1) == with_fp32.infer(batch).argmax(1)).mean()
    assert agreement >= 0.98
