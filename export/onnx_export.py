"""PyTorch -> ONNX export of our models (dynamic batch, height and width), simplified, with metadata.

Uses the TorchScript-based exporter (``dynamo=False``): it is the one that exports ModelOpt's
fake-quantized (QAT) models (the dynamo exporter fails on the quantizers' data-dependent
guards), so every stage exports through one path. The graph is then simplified with onnxslim
(it keeps Q/DQ pairs, dynamic axes and metadata) and checked with onnx's checker.

    from roadseg.export.onnx_export import build_onnx
    proto = build_onnx(model, info)            # info: models.model_metadata.ModelInfo
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch

from roadseg.models.core.model_metadata import ModelInfo, write_onnx_info

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def onnx_bytes(model: torch.nn.Module, input_size: tuple[int, int], opset: int = DEFAULT_OPSET,
               dynamic: bool = True, in_channels: int = 3) -> bytes:
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(1, in_channels, *input_size, device=device)
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None)
    return buffer.getvalue()


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(proto)


def build_onnx(model: torch.nn.Module, info: ModelInfo, opset: int = DEFAULT_OPSET,
               simplified: bool = True) -> onnx.ModelProto:
    """Export ``model`` at ``info.input_size`` with dynamic axes, simplify, and attach ``info``."""
    proto = onnx.load_from_string(onnx_bytes(model, info.input_size, opset))
    if simplified:
        proto = simplify(proto)
    proto.producer_name = "roadseg"
    write_onnx_info(proto, info)
    onnx.checker.check_model(proto)
    return proto
