"""INT8 QAT with ModelOpt: placement, the checkpoint round trip, and compress/qat.py end to end
(followed by export/to_onnx.py, whose Q/DQ file must pass the parity gate)."""

from __future__ import annotations

import json

import pytest
import torch

from roadseg.models.checkpoint import load_checkpoint, load_model, make_checkpoint, save_checkpoint
from roadseg.models.complexity import count_params_and_macs
from roadseg.models.quantization import is_quantized, quantize
from roadseg.models.unet import UNet
from tests.conftest import assert_one_line_error, run_script

SIZE = (32, 64)


@pytest.fixture
def quantized():
    torch.manual_seed(0)
    model = UNet.from_base_width(8, depth=2).eval()
    batches = [torch.randn(2, 3, *SIZE) for _ in range(2)]
    return quantize(model, lambda m: [m(x) for x in batches]), batches


def test_quantizers_sit_on_every_conv_with_the_right_weight_axis(quantized):
    model, _ = quantized
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and is_quantized(model)
    for module in convs:
        assert module.input_quantizer.is_enabled and module.weight_quantizer.is_enabled
        assert module.input_quantizer.axis is None  # per-tensor activations
        expected_axis = 1 if isinstance(module, torch.nn.ConvTranspose2d) else 0  # output channels
        assert module.weight_quantizer.axis == expected_axis, module
        assert module.weight_quantizer.amax.numel() == module.weight.shape[expected_axis]


def test_quantized_checkpoint_is_plain_and_restores_identically(quantized, tmp_path):
    model, batches = quantized
    save_checkpoint(tmp_path / "q.pt", make_checkpoint(model, {"stage": "qat", "input_size": list(SIZE)}))
    ckpt = load_checkpoint(tmp_path / "q.pt")  # weights_only=True inside
    assert "modelopt_state" in ckpt and ckpt["meta"]["versions"]["modelopt"]
    restored, _ = load_model(tmp_path / "q.pt")
    assert is_quantized(restored)
    with torch.no_grad():
        for x in batches:
            assert torch.equal(restored(x), model(x))
    assert count_params_and_macs(restored, SIZE) == count_params_and_macs(UNet.from_base_width(8, depth=2), SIZE)


def test_float_checkpoint_has_no_modelopt_state(tmp_path):
    save_checkpoint(tmp_path / "f.pt", make_checkpoint(UNet.from_base_width(8, depth=2), {"stage": "train"}))
    assert "modelopt_state" not in load_checkpoint(tmp_path / "f.pt")


@pytest.mark.slow
def test_qat_cli_then_int8_onnx_export_passes_the_gate(synthetic_root, tmp_path):
    assert run_script("models/init_checkpoint.py", "--out", tmp_path, "--base-width", "8", "--depth", "2",
                      "--img-size", *map(str, SIZE)).returncode == 0
    data = ("--dataset", "synthetic", "--data-path", synthetic_root)
    result = run_script("compress/qat.py", "--ckpt", tmp_path / "init.pt", *data, "--out", tmp_path / "qat",
                        "--epochs", "1", "--calib-images", "4", "--batch-size", "2", "--workers", "0",
                        "--json", tmp_path / "qat.json", timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "qat.json").read_text())
    assert {"float", "calibrated", "qat"} <= set(report)
    assert 0 <= report["qat"]["road_iou"] <= 1
    model, ckpt = load_model(tmp_path / "qat" / "best.pt")
    assert is_quantized(model) and ckpt["meta"]["stage"] == "qat"
    assert ckpt["meta"]["quantization"]["calibration_images"] == 4
    assert ckpt["meta"]["parent_sha256"] == report["parent_sha256"]

    again = run_script("compress/qat.py", "--ckpt", tmp_path / "qat" / "best.pt", *data, "--out", tmp_path / "q2")
    assert_one_line_error(again, "already quantized")

    exported = run_script("export/to_onnx.py", "--ckpt", tmp_path / "qat" / "best.pt", *data,
                          "--out", tmp_path / "onnx", "--parity-images", "4", timeout=240)
    assert exported.returncode == 0, exported.stderr[-2000:]
    onnx_report = json.loads((tmp_path / "onnx" / "model_int8_qat_report.json").read_text())
    assert onnx_report["precision"] == "int8-qat-qdq" and onnx_report["parity"]["passed"]
    assert onnx_report["parity"]["agreement_percent"] >= 99.9
