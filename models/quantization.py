"""INT8 fake quantization of our models with NVIDIA Model Optimizer (ModelOpt), and its checkpoint state.

The placement is ModelOpt's ``INT8_DEFAULT_CFG`` (per-tensor int8 activations at every conv,
transposed-conv and pool input; per-channel symmetric int8 weights), which exports to the
explicit Q/DQ ONNX that TensorRT wants. One change: a ConvTranspose2d weight is laid out
(in, out, kH, kW), so its output channels are axis 1, not ModelOpt's default axis 0.

A quantized model's checkpoint holds ``modelopt_state`` (ModelOpt's own description of the
conversion, plain data) beside the usual ``state_dict`` (which then includes each quantizer's
``_amax``); ``roadseg.models.checkpoint.load_model`` restores it. modelopt is imported only when a
quantized model is made or loaded.

    from roadseg.models.quantization import quantize
    qmodel = quantize(model, forward_loop=lambda m: [m(x) for x in calibration_batches])
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable

from torch import nn

from roadseg.models.core.cli import ToolError

QAT_CONFIG_NAME = "INT8_DEFAULT_CFG, ConvTranspose2d weights per-channel on axis 1"


def _modelopt():
    try:
        import modelopt.torch.opt as mto
        import modelopt.torch.quantization as mtq
    except ImportError as err:
        raise ToolError(f"INT8 QAT needs NVIDIA Model Optimizer (pip install nvidia-modelopt): {err}") from None
    return mto, mtq


def qat_config() -> dict:
    _, mtq = _modelopt()
    config = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
    config["quant_cfg"].append({"quantizer_name": "*weight_quantizer", "parent_class": "nn.ConvTranspose2d",
                                "cfg": {"num_bits": 8, "axis": 1}})
    return config


def quantize(model: nn.Module, forward_loop: Callable[[nn.Module], None] | None) -> nn.Module:
    """Insert fake quantizers (in place) and calibrate their ranges with ``forward_loop(model)``."""
    _, mtq = _modelopt()
    return mtq.quantize(model, qat_config(), forward_loop)


def is_quantized(model: nn.Module) -> bool:
    if "modelopt.torch.opt" not in sys.modules:  # nothing can be converted before modelopt is imported
        return False
    mto, _ = _modelopt()
    return mto.ModeloptStateManager.is_converted(model)


def modelopt_state(model: nn.Module) -> dict:
    mto, _ = _modelopt()
    return mto.modelopt_state(model)


def restore_quantized(model: nn.Module, state: dict) -> nn.Module:
    """Re-apply a saved conversion to a freshly built float model (weights are loaded afterwards)."""
    mto, _ = _modelopt()
    return mto.restore_from_modelopt_state(model, state)
