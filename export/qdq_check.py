"""Check the explicit INT8 quantization (QuantizeLinear/DequantizeLinear) of ONNX files bound for TensorRT.

Owns the rules a Q/DQ ONNX file must keep before a TensorRT INT8 engine is built from it, whichever
tool wrote it (export/to_onnx.py from a ModelOpt QAT checkpoint, or ModelOpt's ONNX post-training
quantization). onnx and numpy only (no torch):

- every Conv and ConvTranspose takes its data (input 0) and its weight (input 1) from a
  DequantizeLinear, directly or through Identity nodes;
- weights: a constant (initializer or Constant node, either float behind a QuantizeLinear or already
  int8), symmetric int8 (zero point 0), per-channel on the output-channel axis: 0 for Conv, 1 for
  ConvTranspose (the Q/DQ ``axis`` attribute; ONNX's default when it is absent is 1), with one scale
  per output channel;
- activations: int8 (not uint8), zero point 0, per-tensor (one scale);
- every scale is positive and finite, and a DequantizeLinear fed by a QuantizeLinear uses the same
  scale, zero point and axis (it reads back what was written);
- Concat: when any input comes from a DequantizeLinear, all do, with one shared scale and zero point
  (a Concat with no quantized input, quantized after it as ModelOpt QAT does, is fine).

One exception, only when asked (``allow_float_small_convs``, ``--allow-float-small-convs``): a Conv
left entirely in float (neither data nor weight quantized) with fewer than 16 input or output
channels. ModelOpt's ONNX post-training quantization leaves those out on purpose, because TensorRT
has no faster INT8 kernel for them; they run in FP16. A half-quantized Conv still fails.

    python export/qdq_check.py runs/demo/onnx/model_int8_qat.onnx [more.onnx ...]

prints one OK line per file (exit 0), or one error line naming the file, the node and the rule (exit 2).

    from roadseg.export.qdq_check import check_qdq, require_qdq
    problems = check_qdq(onnx.load(path))      # [] when every rule holds
    summary = require_qdq(path)                # raises QDQError with the first violation
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from roadseg.models.core.cli import ToolError, run

CONV_OPS = ("Conv", "ConvTranspose")
# Where a weight's output channels lie: Conv (out, in/groups, kH, kW); ConvTranspose (in, out/groups, kH, kW).
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}
ONNX_DEFAULT_AXIS = 1  # QuantizeLinear/DequantizeLinear "axis" when the attribute is absent
INT8 = TensorProto.INT8
SMALL_CONV_CHANNELS = 16  # below this TensorRT has no INT8 Conv kernel worth using (ModelOpt's rule)


class QDQError(ToolError):
    """A Q/DQ ONNX file that TensorRT should not get; the message names the file, the node and the rule."""


@dataclass(frozen=True)
class QDQSummary:
    """What a file that passed holds (for the OK line)."""

    conv: int
    conv_transpose: int
    depthwise: int
    quantize_linear: int
    dequantize_linear: int
    weight_dq: int
    activation_dq: int
    concat: int
    concat_quantized: int
    float_small_conv: int = 0

    def __str__(self) -> str:
        depthwise = f" ({self.depthwise} depthwise)" if self.depthwise else ""
        kept_float = (f", {self.float_small_conv} small Conv left in float (< {SMALL_CONV_CHANNELS} channels)"
                      if self.float_small_conv else "")
        return (f"{self.conv - self.float_small_conv} Conv{depthwise} + {self.conv_transpose} ConvTranspose quantized"
                f"{kept_float} "
                f"(int8 weights per-channel, int8 activations per-tensor); {self.quantize_linear} QuantizeLinear, "
                f"{self.dequantize_linear} DequantizeLinear ({self.weight_dq} weight, {self.activation_dq} activation);"
                f" {self.concat_quantized} of {self.concat} Concat with quantized inputs")


# graph access -------------------------------------------------------------------------------------
def _describe(node: onnx.NodeProto) -> str:
    return f"{node.op_type} '{node.name}'" if node.name else f"{node.op_type} (output '{node.output[0]}')"


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _type_name(elem_type: int | None) -> str:
    if not elem_type:
        return "an unknown type"
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type {elem_type}"


def _short(values: np.ndarray) -> str:
    flat = np.asarray(values).ravel()
    text = np.array2string(flat[:4], separator=", ", precision=6)
    return text[:-1] + ", ...]" if flat.size > 4 else text


class _Graph:
    def __init__(self, graph: onnx.GraphProto):
        self.nodes = list(graph.node)
        self.producer = {name: node for node in self.nodes for name in node.output if name}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.graph_inputs = {value.name for value in graph.input} - set(self.initializers)
        self.elem_types = {value.name: value.type.tensor_type.elem_type
                           for value in [*graph.input, *graph.value_info, *graph.output]}
        self._arrays: dict[str, np.ndarray | None] = {}

    def through_identity(self, name: str) -> str:
        """The tensor ``name`` is a copy of, following Identity nodes back."""
        seen = set()
        while name in self.producer and self.producer[name].op_type == "Identity" and name not in seen:
            seen.add(name)
            name = self.producer[name].input[0]
        return name

    def source(self, name: str) -> onnx.NodeProto | None:
        """The node that really makes ``name`` (Identity nodes skipped); None for an initializer or graph input."""
        return self.producer.get(self.through_identity(name))

    def describe_source(self, name: str) -> str:
        real = self.through_identity(name)
        if real in self.producer:
            return _describe(self.producer[real])
        if real in self.initializers:
            return f"initializer '{real}'"
        if real in self.graph_inputs:
            return f"graph input '{real}'"
        return f"undefined tensor '{real}'"

    def consumers_of(self, name: str) -> list[onnx.NodeProto]:
        """Nodes that read ``name``, looking through Identity nodes."""
        found = []
        for node in self.consumers.get(name, []):
            found.extend(self.consumers_of(node.output[0]) if node.op_type == "Identity" else [node])
        return found

    def constant(self, name: str) -> tuple[tuple[int, ...], int] | None:
        """(shape, ONNX element type) of a constant tensor (initializer or Constant node), else None."""
        real = self.through_identity(name)
        if real in self.initializers:
            tensor = self.initializers[real]
            return tuple(tensor.dims), tensor.data_type
        node = self.producer.get(real)
        if node is None or node.op_type != "Constant" or not node.attribute:
            return None
        attribute = node.attribute[0]
        if attribute.name == "value":
            return tuple(attribute.t.dims), attribute.t.data_type
        kinds = {"value_float": ((), TensorProto.FLOAT), "value_int": ((), TensorProto.INT64),
                 "value_floats": ((len(attribute.floats),), TensorProto.FLOAT),
                 "value_ints": ((len(attribute.ints),), TensorProto.INT64)}
        return kinds.get(attribute.name)

    def array(self, name: str) -> np.ndarray | None:
        """The values of a constant tensor (initializer or Constant node), else None."""
        real = self.through_identity(name)
        if real not in self._arrays:
            self._arrays[real] = self._load_array(real)
        return self._arrays[real]

    def _load_array(self, real: str) -> np.ndarray | None:
        if real in self.initializers:
            return numpy_helper.to_array(self.initializers[real])
        node = self.producer.get(real)
        if node is None or node.op_type != "Constant" or not node.attribute:
            return None
        attribute = node.attribute[0]
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(onnx.helper.get_attribute_value(attribute))
        return None


# one Q or DQ node's parameters --------------------------------------------------------------------
@dataclass
class _QParams:
    scale: np.ndarray | None
    zero_point: np.ndarray | None  # None when the input is absent (then 0)
    elem_type: int | None  # the quantized (integer) type
    axis: int
    axis_given: bool
    block_size: int

    @property
    def per_tensor(self) -> bool:
        return self.scale is not None and self.scale.size == 1 and self.scale.ndim <= 1

    def same_as(self, other: _QParams) -> bool:
        def equal(a, b):
            if a is None or b is None:
                return (a is None or not np.any(a)) and (b is None or not np.any(b))
            return a.shape == b.shape and np.array_equal(a.astype(np.float64), b.astype(np.float64))

        same_axis = self.per_tensor or self.axis == other.axis
        return (equal(self.scale, other.scale) and equal(self.zero_point, other.zero_point)
                and self.elem_type == other.elem_type and same_axis and self.block_size == other.block_size)


def _params(g: _Graph, node: onnx.NodeProto) -> _QParams:
    scale = g.array(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    has_zero_point = len(node.input) > 2 and bool(node.input[2])
    zero_point = g.array(node.input[2]) if has_zero_point else None
    return _QParams(scale=scale, zero_point=zero_point, elem_type=_quantized_type(g, node),
                    axis=int(_attr(node, "axis", ONNX_DEFAULT_AXIS)), axis_given=_attr(node, "axis") is not None,
                    block_size=int(_attr(node, "block_size", 0)))


def _quantized_type(g: _Graph, node: onnx.NodeProto, depth: int = 0) -> int | None:
    """The integer type a Q writes or a DQ reads (the zero point's type, else what the ONNX spec defaults to)."""
    if len(node.input) > 2 and node.input[2]:
        constant = g.constant(node.input[2])
        return constant[1] if constant else g.elem_types.get(node.input[2])
    if node.op_type == "QuantizeLinear":
        return int(_attr(node, "output_dtype", 0)) or TensorProto.UINT8  # no zero point: uint8 (spec)
    constant = g.constant(node.input[0])
    if constant:
        return constant[1]
    producer = g.source(node.input[0])
    if producer is not None and producer.op_type == "QuantizeLinear" and depth < 4:
        return _quantized_type(g, producer, depth + 1)
    return g.elem_types.get(g.through_identity(node.input[0]))


def _feeding_q(g: _Graph, dq: onnx.NodeProto) -> onnx.NodeProto | None:
    producer = g.source(dq.input[0])
    return producer if producer is not None and producer.op_type == "QuantizeLinear" else None


def _weight_name(g: _Graph, dq: onnx.NodeProto) -> str | None:
    """The constant a DQ dequantizes (int8 constant -> DQ, or float constant -> Q -> DQ), else None."""
    if g.constant(dq.input[0]):
        return dq.input[0]
    q = _feeding_q(g, dq)
    if q is not None and g.constant(q.input[0]):
        return q.input[0]
    return None


def _zero_points(params: _QParams) -> np.ndarray:
    return np.zeros(1, np.int64) if params.zero_point is None else params.zero_point.ravel()


def _zero_point_is_zero(params: _QParams) -> bool:
    return params.zero_point is None or not np.any(params.zero_point)


# the rules ----------------------------------------------------------------------------------------
def _check_dq(g: _Graph, dq: onnx.NodeProto) -> list[str]:
    """Rules every DequantizeLinear keeps: int8, zero point 0, positive scales, matches its Q; per-tensor
    for activations."""
    users = g.consumers_of(dq.output[0])
    where = _describe(dq) + (f" (feeding {', '.join(_describe(n) for n in users[:2])}"
                             f"{' and more' if len(users) > 2 else ''})" if users else "")
    params = _params(g, dq)
    kind = "weight" if _weight_name(g, dq) else "activation"
    problems = []
    if params.scale is None:
        return [f"{where}: its scale is not a constant (initializer or Constant node)"]
    if params.elem_type != INT8:
        problems.append(f"{where}: {kind} must be quantized to int8, is {_type_name(params.elem_type)}"
                        + (" (no zero point: ONNX defaults to uint8)" if params.zero_point is None
                           and params.elem_type == TensorProto.UINT8 else ""))
    if len(dq.input) > 2 and dq.input[2] and params.zero_point is None:
        problems.append(f"{where}: its zero point is not a constant (initializer or Constant node)")
    elif not _zero_point_is_zero(params):
        problems.append(f"{where}: {kind} zero point must be 0 (symmetric int8), is {_short(params.zero_point)}")
    scale = params.scale.astype(np.float64).ravel()
    bad = np.flatnonzero(~(np.isfinite(scale) & (scale > 0)))
    if bad.size:
        problems.append(f"{where}: every scale must be positive and finite; {bad.size} of {scale.size} are not "
                        f"(index {bad[0]}: {scale[bad[0]]:g})")
    if params.block_size:
        problems.append(f"{where}: blocked quantization (block_size {params.block_size}) is not per-tensor or "
                        "per-channel")
    if kind == "activation" and not params.per_tensor:
        problems.append(f"{where}: activation must be quantized per-tensor (one scale), has scale of shape "
                        f"{list(params.scale.shape)} on axis {params.axis}")
    q = _feeding_q(g, dq)
    if q is not None:
        q_params = _params(g, q)
        if q_params.scale is not None and not q_params.same_as(params):
            problems.append(f"{where}: its {_describe(q)} uses a different scale, zero point, type or axis; "
                            "a Q/DQ pair must agree")
    return problems


def _is_float_small_conv(g: _Graph, conv: onnx.NodeProto) -> bool:
    """A Conv with neither input quantized and fewer than SMALL_CONV_CHANNELS input or output channels."""
    if conv.op_type != "Conv" or len(conv.input) < 2:
        return False
    if any((s := g.source(name)) is not None and s.op_type == "DequantizeLinear" for name in conv.input[:2]):
        return False
    weight = g.constant(conv.input[1])
    if weight is None or len(weight[0]) < 2:
        return False
    out_channels, in_channels = weight[0][0], weight[0][1] * int(_attr(conv, "group", 1))
    return min(out_channels, in_channels) < SMALL_CONV_CHANNELS


def _check_conv(g: _Graph, conv: onnx.NodeProto, allow_float_small_convs: bool = False) -> list[str]:
    """Rules of one Conv/ConvTranspose: data and weight from a DQ; the weight per-channel on the right axis."""
    if allow_float_small_convs and _is_float_small_conv(g, conv):
        return []
    where = _describe(conv)
    problems = []
    for index, role in ((0, "data"), (1, "weight")):
        if len(conv.input) <= index or not conv.input[index]:
            problems.append(f"{where}: has no input {index} ({role})")
            continue
        source = g.source(conv.input[index])
        if source is None or source.op_type != "DequantizeLinear":
            problems.append(f"{where}: input {index} ({role}) must come from a DequantizeLinear, "
                            f"comes from {g.describe_source(conv.input[index])} (not quantized)")
    if problems:
        return problems
    dq = g.source(conv.input[1])
    weight = _weight_name(g, dq)
    if weight is None:
        return [f"{where}: its weight ({_describe(dq)}) must dequantize a constant (initializer or Constant "
                f"node, int8 or behind a QuantizeLinear), dequantizes {g.describe_source(dq.input[0])}"]
    shape, _ = g.constant(weight)
    params = _params(g, dq)
    expected = WEIGHT_AXIS[conv.op_type]
    if params.scale is None or len(shape) <= expected:
        return problems  # reported by _check_dq / the ONNX checker
    channels = shape[expected]
    rule = (f"{conv.op_type} weights must be int8 per-channel on axis {expected} (output channels, "
            f"{channels} for weight shape {list(shape)})")
    axis = params.axis + len(shape) if params.axis < 0 else params.axis
    if params.per_tensor and channels != 1:
        problems.append(f"{where}: {rule}; weight {_describe(dq)} is per-tensor (one scale)")
    elif not params.per_tensor and axis != expected:
        given = f"axis {params.axis}" if params.axis_given else f"no axis attribute, so ONNX's default axis {axis}"
        problems.append(f"{where}: {rule}; weight {_describe(dq)} has {given}")
    elif not params.per_tensor and params.scale.shape != (channels,):
        problems.append(f"{where}: {rule}; weight {_describe(dq)} has scale of shape {list(params.scale.shape)}")
    return problems


def _check_concat(g: _Graph, concat: onnx.NodeProto) -> list[str]:
    """A Concat with any quantized input: all inputs from a DQ, sharing one scale and zero point."""
    sources = [g.source(name) for name in concat.input if name]
    quantized = [s for s in sources if s is not None and s.op_type == "DequantizeLinear"]
    if not quantized:
        return []
    where = _describe(concat)
    for name, source in zip([n for n in concat.input if n], sources, strict=True):
        if source is None or source.op_type != "DequantizeLinear":
            return [f"{where}: when one input comes from a DequantizeLinear all must; input '{name}' comes from "
                    f"{g.describe_source(name)} (not quantized)"]
    first = _params(g, quantized[0])
    for other in quantized[1:]:
        params = _params(g, other)
        if first.scale is None or params.scale is None:
            continue  # reported by _check_dq
        same_scale = first.scale.shape == params.scale.shape and np.array_equal(first.scale, params.scale)
        same_zero = (np.array_equal(_zero_points(first), _zero_points(params))
                     and first.elem_type == params.elem_type)
        if not (same_scale and same_zero):
            return [f"{where}: quantized inputs must share one scale and zero point; {_describe(quantized[0])} has "
                    f"scale {_short(first.scale)}, {_describe(other)} has scale {_short(params.scale)}"]
    return []


def check_qdq(model: onnx.ModelProto, allow_float_small_convs: bool = False) -> list[str]:
    """Every rule violation of ``model``'s main graph, in graph order, each naming its node; [] = OK."""
    g = _Graph(model.graph)
    if not any(node.op_type == "DequantizeLinear" for node in g.nodes):
        return ["has no DequantizeLinear nodes: not an explicitly quantized (Q/DQ) INT8 model"]
    problems = []
    for node in g.nodes:
        if node.op_type == "DequantizeLinear":
            problems += _check_dq(g, node)
        elif node.op_type in CONV_OPS:
            problems += _check_conv(g, node, allow_float_small_convs)
        elif node.op_type == "Concat":
            problems += _check_concat(g, node)
    return problems


def summarize(model: onnx.ModelProto, allow_float_small_convs: bool = False) -> QDQSummary:
    g = _Graph(model.graph)
    count = defaultdict(int)
    for node in g.nodes:
        count[node.op_type] += 1
    dqs = [node for node in g.nodes if node.op_type == "DequantizeLinear"]
    weights = sum(1 for dq in dqs if _weight_name(g, dq))
    concats = [node for node in g.nodes if node.op_type == "Concat"]
    quantized_concats = sum(1 for node in concats if any(
        (s := g.source(name)) is not None and s.op_type == "DequantizeLinear" for name in node.input if name))
    depthwise = sum(1 for node in g.nodes if node.op_type == "Conv" and int(_attr(node, "group", 1)) > 1)
    return QDQSummary(conv=count["Conv"], conv_transpose=count["ConvTranspose"], depthwise=depthwise,
                      quantize_linear=count["QuantizeLinear"], dequantize_linear=len(dqs), weight_dq=weights,
                      activation_dq=len(dqs) - weights, concat=len(concats), concat_quantized=quantized_concats,
                      float_small_conv=sum(1 for node in g.nodes if allow_float_small_convs
                                           and _is_float_small_conv(g, node)))


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file; a missing, unreadable or non-ONNX file is a QDQError naming it."""
    from google.protobuf.message import DecodeError  # onnx's own dependency

    path = Path(path)
    if not path.exists():
        raise QDQError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except DecodeError:
        raise QDQError(f"{path}: not an ONNX file (protobuf could not parse it)") from None
    except (OSError, onnx.checker.ValidationError) as err:
        raise QDQError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    if not model.graph.node:
        raise QDQError(f"{path}: not an ONNX model (it has no graph nodes)")
    return model


def require_qdq(model_or_path: onnx.ModelProto | str | os.PathLike, where: str | None = None,
                allow_float_small_convs: bool = False) -> QDQSummary:
    """Raise QDQError (first violation, and how many more) unless every rule holds; else the summary."""
    if isinstance(model_or_path, onnx.ModelProto):
        model, where = model_or_path, where or "model"
    else:
        model, where = load_onnx(model_or_path), where or str(model_or_path)
    problems = check_qdq(model, allow_float_small_convs)
    if problems:
        more = f" (and {len(problems) - 1} more Q/DQ violations)" if len(problems) > 1 else ""
        raise QDQError(f"{where}: {problems[0]}{more}")
    return summarize(model, allow_float_small_convs)


# command line -------------------------------------------------------------------------------------
def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Check the INT8 Q/DQ nodes of ONNX files bound for TensorRT.",
                                     add_help=add_help, prog="export/qdq_check.py")
    parser.add_argument("models", type=Path, nargs="+", metavar="MODEL.onnx", help="ONNX files to check")
    parser.add_argument("--allow-float-small-convs", action="store_true",
                        help=f"accept Convs with < {SMALL_CONV_CHANNELS} channels left entirely in float "
                             "(ModelOpt ONNX PTQ leaves them to FP16 on purpose)")
    return parser


def main(args: argparse.Namespace) -> int:
    for path in args.models:
        print(f"{path}: OK: {require_qdq(path, allow_float_small_convs=args.allow_float_small_convs)}", flush=True)
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
