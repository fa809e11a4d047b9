"""export/qdq_check.py: real ModelOpt QAT exports pass; each broken rule fails naming its node; the CLI.

Mutations start from a real QAT export (Constant-node scales, float weight -> Q -> DQ); the Concat
and int8-weight cases are small graphs built by hand with onnx.helper (initializer scales)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from roadseg.export.qdq_check import QDQError, check_qdq, require_qdq, summarize
from tests.conftest import REPO_ROOT, assert_one_line_error, run_script

SIZE = (32, 32)
CONV = "/downs.0/block/conv1/conv/Conv"  # weight (16, 8, 3, 3): axes 0 and 1 differ in size
CONV_T = "/ups.0/up/ConvTranspose"  # weight (32, 16, 2, 2): output channels on axis 1
DIMS = ["N", "C", "H", "W"]  # hand-built graphs


def _qat_export(**unet_kwargs) -> onnx.ModelProto:
    torch = pytest.importorskip("torch")
    pytest.importorskip("modelopt.torch.quantization")
    from roadseg.export.onnx_export import onnx_bytes
    from roadseg.models.quantization import quantize
    from roadseg.models.unet import UNet

    torch.manual_seed(0)
    model = UNet.from_base_width(8, depth=2, **unet_kwargs).eval()
    batches = [torch.randn(2, 3, *SIZE) for _ in range(2)]
    qmodel = quantize(model, lambda m: [m(x) for x in batches])
    return onnx.load_from_string(onnx_bytes(qmodel, SIZE))


@pytest.fixture(scope="module")
def qat_transpose() -> onnx.ModelProto:
    return _qat_export()


@pytest.fixture(scope="module")
def qat_bilinear() -> onnx.ModelProto:
    # Every other option at once: bilinear up path, depthwise-separable convs, group norm.
    return _qat_export(up="bilinear", separable=True, norm="gn")


# helpers ------------------------------------------------------------------------------------------
def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if node.name == name)


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if tensor in node.output)


def _pair(model: onnx.ModelProto, conv_name: str, index: int) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    """The QuantizeLinear and DequantizeLinear in front of input ``index`` of a conv."""
    dq = _producer(model, _node(model, conv_name).input[index])
    q = _producer(model, dq.input[0])
    assert (q.op_type, dq.op_type) == ("QuantizeLinear", "DequantizeLinear")
    return q, dq


def _set_constant(model: onnx.ModelProto, tensor: str, value: np.ndarray) -> None:
    """Give the Constant node that makes ``tensor`` a new value (Q and DQ share it in the export)."""
    constant = _producer(model, tensor)
    assert constant.op_type == "Constant"
    constant.attribute[0].t.CopyFrom(numpy_helper.from_array(value))


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _set_axis(nodes, axis: int | None) -> None:
    for node in nodes:
        kept = [a for a in node.attribute if a.name != "axis"]
        del node.attribute[:]
        node.attribute.extend(kept + ([helper.make_attribute("axis", axis)] if axis is not None else []))


def _fails(model: onnx.ModelProto, *fragments: str) -> list[str]:
    problems = check_qdq(model)
    assert problems, "expected a violation"
    assert all(fragment in problems[0] for fragment in fragments), problems
    with pytest.raises(QDQError, match="^model: "):
        require_qdq(model)
    return problems


# real exports -------------------------------------------------------------------------------------
def test_real_qat_exports_pass(qat_transpose, qat_bilinear):
    assert check_qdq(qat_transpose) == []
    summary = require_qdq(qat_transpose)
    assert (summary.conv, summary.conv_transpose, summary.concat, summary.concat_quantized) == (11, 2, 2, 0)
    assert summary.weight_dq == 13 and summary.depthwise == 0  # one per Conv/ConvTranspose weight

    assert check_qdq(qat_bilinear) == []
    summary = summarize(qat_bilinear)
    assert summary.conv_transpose == 0 and summary.depthwise == 10 and summary.conv == 23
    assert summary.weight_dq == 23


def test_simplified_export_passes(qat_transpose):
    # export/to_onnx.py ships the onnxslim'd graph: Constant nodes become initializers, Identity nodes go.
    from roadseg.export.onnx_export import simplify

    slim = simplify(_copy(qat_transpose))
    assert not any(node.op_type in ("Constant", "Identity") for node in slim.graph.node)
    assert check_qdq(slim) == []


def test_export_uses_float_weights_behind_q_and_axis_1_for_conv_transpose(qat_transpose):
    q, dq = _pair(qat_transpose, CONV_T, 1)
    assert q.input[0] in {init.name for init in qat_transpose.graph.initializer}  # float weight -> Q -> DQ
    assert _axis(q) == _axis(dq) == 1  # models/quantization.py's ConvTranspose2d override
    assert _axis(_pair(qat_transpose, CONV, 1)[1]) == 0


# broken weights -----------------------------------------------------------------------------------
def test_weight_zero_point_must_be_zero(qat_transpose):
    model = _copy(qat_transpose)
    _, dq = _pair(model, CONV, 1)
    _set_constant(model, dq.input[2], np.ones(16, dtype=np.int8))
    _fails(model, CONV, dq.name, "zero point must be 0")


@pytest.mark.parametrize("axis", [1, None], ids=["axis1", "no-axis-attribute"])
def test_conv_weight_must_be_per_channel_on_axis_0(qat_transpose, axis):
    model = _copy(qat_transpose)
    _set_axis(_pair(model, CONV, 1), axis)
    problems = _fails(model, f"Conv '{CONV}'", "axis 0")
    assert ("ONNX's default axis 1" in problems[0]) == (axis is None), problems[0]


def test_conv_weight_must_not_be_per_tensor(qat_transpose):
    model = _copy(qat_transpose)
    _, dq = _pair(model, CONV, 1)
    _set_constant(model, dq.input[1], np.array(0.01, dtype=np.float32))
    _set_constant(model, dq.input[2], np.array(0, dtype=np.int8))
    _fails(model, f"Conv '{CONV}'", "per-tensor")


def test_conv_transpose_weight_must_be_on_axis_1_the_onnx_default(qat_transpose):
    model = _copy(qat_transpose)
    _set_axis(_pair(model, CONV_T, 1), 0)
    _fails(model, f"ConvTranspose '{CONV_T}'", "axis 1", "axis 0")

    model = _copy(qat_transpose)
    _set_axis(_pair(model, CONV_T, 1), None)  # no attribute: ONNX reads axis 1, which is right here
    assert check_qdq(model) == []


def test_weight_scale_must_be_positive(qat_transpose):
    model = _copy(qat_transpose)
    _, dq = _pair(model, CONV, 1)
    scale = numpy_helper.to_array(_producer(model, dq.input[1]).attribute[0].t).copy()
    scale[3] = 0.0  # a dead channel: TensorRT rejects non-positive scales
    _set_constant(model, dq.input[1], scale)
    _fails(model, CONV, "positive", "index 3: 0")


def test_q_and_dq_of_a_pair_must_agree(qat_transpose):
    model = _copy(qat_transpose)
    q, dq = _pair(model, CONV, 1)
    halved = numpy_helper.to_array(_producer(model, dq.input[1]).attribute[0].t) / 2
    model.graph.initializer.append(numpy_helper.from_array(halved, "halved_scale"))
    dq.input[1] = "halved_scale"
    _fails(model, dq.name, q.name, "must agree")


# broken activations -------------------------------------------------------------------------------
def test_activation_must_be_per_tensor(qat_transpose):
    model = _copy(qat_transpose)
    q, dq = _pair(model, CONV, 0)  # its input has 8 channels
    scale = float(numpy_helper.to_array(_producer(model, dq.input[1]).attribute[0].t))
    _set_constant(model, dq.input[1], np.full(8, scale, dtype=np.float32))
    _set_constant(model, dq.input[2], np.zeros(8, dtype=np.int8))
    _set_axis([q, dq], 1)
    _fails(model, dq.name, CONV, "per-tensor")


def test_activation_must_be_int8_not_uint8(qat_transpose):
    model = _copy(qat_transpose)
    _, dq = _pair(model, CONV, 0)
    _set_constant(model, dq.input[2], np.array(0, dtype=np.uint8))
    _fails(model, dq.name, CONV, "int8", "uint8")

    model = _copy(qat_transpose)
    q, dq = _pair(model, CONV, 0)
    del q.input[2], dq.input[2]  # no zero point: ONNX's QuantizeLinear then writes uint8
    _fails(model, dq.name, "uint8", "ONNX defaults to uint8")


@pytest.mark.parametrize("index,role", [(0, "data"), (1, "weight")])
def test_conv_with_a_bypassed_dq_fails(qat_transpose, index, role):
    model = _copy(qat_transpose)
    q, dq = _pair(model, CONV, index)
    _node(model, CONV).input[index] = q.input[0]
    for node in (q, dq):
        model.graph.node.remove(node)
    problems = check_qdq(model)
    assert len(problems) == 1 and f"Conv '{CONV}'" in problems[0], problems
    assert f"input {index} ({role}) must come from a DequantizeLinear" in problems[0]


def _bypass(model: onnx.ModelProto, conv: str, index: int) -> None:
    q, dq = _pair(model, conv, index)
    _node(model, conv).input[index] = q.input[0]
    for node in (q, dq):
        model.graph.node.remove(node)


def test_small_float_conv_passes_only_when_allowed_and_only_entirely_float(qat_transpose):
    # CONV has 8 input channels: ModelOpt's ONNX PTQ would leave it to FP16 for TensorRT.
    model = _copy(qat_transpose)
    _bypass(model, CONV, 0)
    _bypass(model, CONV, 1)
    assert len(check_qdq(model)) == 2
    assert check_qdq(model, allow_float_small_convs=True) == []
    assert require_qdq(model, allow_float_small_convs=True).float_small_conv == 1
    half = _copy(qat_transpose)
    _bypass(half, CONV, 0)  # data float, weight still quantized: no tool means that
    assert len(check_qdq(half, allow_float_small_convs=True)) == 1
    wide = _copy(qat_transpose)
    big = "/ups.0/block/conv1/conv/Conv"  # 32 in, 16 out: not small
    _bypass(wide, big, 0)
    _bypass(wide, big, 1)
    assert len(check_qdq(wide, allow_float_small_convs=True)) == 2


def test_float_model_fails_with_one_line():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    assert check_qdq(helper.make_model(graph)) == ["has no DequantizeLinear nodes: not an explicitly "
                                                   "quantized (Q/DQ) INT8 model"]


# hand-built graphs: Concat, int8 weight initializers ----------------------------------------------
def _make(nodes, inputs, initializers, output="y") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, DIMS) for n in inputs],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, DIMS)],
                              [numpy_helper.from_array(np.asarray(v), name) for name, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _qdq(name: str, source: str, scale: float) -> tuple[list[onnx.NodeProto], dict]:
    nodes = [helper.make_node("QuantizeLinear", [source, f"{name}_s", f"{name}_z"], [f"{name}_q"], name=f"{name}_Q"),
             helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"],
                              name=f"{name}_DQ")]
    return nodes, {f"{name}_s": np.float32(scale), f"{name}_z": np.int8(0)}


def _concat_model(scales: list[float | None]) -> onnx.ModelProto:
    """Concat of inputs x0, x1, ...; input i goes through Q/DQ with scales[i] (None: not quantized)."""
    nodes, inits, names = [], {}, []
    for i, scale in enumerate(scales):
        if scale is None:
            names.append(f"x{i}")
            continue
        qdq, values = _qdq(f"in{i}", f"x{i}", scale)
        nodes += qdq + [helper.make_node("Identity", [f"in{i}_dq"], [f"in{i}_id"], name=f"in{i}_Identity")]
        inits.update(values)
        names.append(f"in{i}_id")
    nodes.append(helper.make_node("Concat", names, ["y"], name="skip_Concat", axis=1))
    if all(scale is None for scale in scales):  # keep one Q/DQ so the model counts as quantized
        qdq, values = _qdq("out", "y", 0.1)
        nodes, inits = nodes + qdq, {**inits, **values}
        nodes.append(helper.make_node("Identity", ["out_dq"], ["z"], name="out_Identity"))
        return _make(nodes, [f"x{i}" for i in range(len(scales))], inits, output="z")
    return _make(nodes, [f"x{i}" for i in range(len(scales))], inits)


def test_concat_rules():
    assert check_qdq(_concat_model([0.05, 0.05])) == []
    assert check_qdq(_concat_model([None, None])) == []  # quantized after the Concat, as ModelOpt QAT does
    problems = check_qdq(_concat_model([0.05, 0.07]))
    assert len(problems) == 1 and "Concat 'skip_Concat'" in problems[0] and "share one scale" in problems[0]
    assert "in0_DQ" in problems[0] and "in1_DQ" in problems[0]
    problems = check_qdq(_concat_model([0.05, None]))
    assert len(problems) == 1 and "Concat 'skip_Concat'" in problems[0] and "input 'x1'" in problems[0]


def _int8_weight_model(op: str, axis: int | None) -> onnx.ModelProto:
    """x -> Q/DQ -> op with an int8 weight initializer -> DQ (no QuantizeLinear), as ONNX PTQ may write it."""
    shape, channels = ((6, 4, 3, 3), 6) if op == "Conv" else ((4, 6, 2, 2), 6)
    qdq, inits = _qdq("x", "x", 0.02)
    inits.update({"w": np.ones(shape, dtype=np.int8), "w_s": np.full(channels, 0.01, np.float32),
                  "w_z": np.zeros(channels, np.int8)})
    attrs = {"axis": axis} if axis is not None else {}
    nodes = [*qdq, helper.make_node("DequantizeLinear", ["w", "w_s", "w_z"], ["w_dq"], name="w_DQ", **attrs),
             helper.make_node(op, ["x_dq", "w_dq"], ["y"], name=f"my_{op}")]
    return _make(nodes, ["x"], inits)


def test_int8_weight_initializers():
    assert check_qdq(_int8_weight_model("Conv", 0)) == []
    assert check_qdq(_int8_weight_model("ConvTranspose", 1)) == []
    assert check_qdq(_int8_weight_model("ConvTranspose", None)) == []  # default axis 1
    problems = check_qdq(_int8_weight_model("Conv", None))
    assert len(problems) == 1 and "Conv 'my_Conv'" in problems[0] and "default axis 1" in problems[0]


# command line -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_ok_and_one_line_errors(qat_transpose, tmp_path):
    good, bad, text = tmp_path / "good.onnx", tmp_path / "bad.onnx", tmp_path / "notes.onnx"
    onnx.save(qat_transpose, good)
    model = _copy(qat_transpose)
    _set_axis(_pair(model, CONV_T, 1), 0)
    onnx.save(model, bad)
    text.write_text("not a model\n")

    result = run_script("export/qdq_check.py", good)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("OK") == 1 and "11 Conv + 2 ConvTranspose" in result.stdout

    result = run_script("export/qdq_check.py", good, bad)
    assert_one_line_error(result, "bad.onnx", f"ConvTranspose '{CONV_T}'", "axis 1")
    assert "good.onnx: OK" in result.stdout
    assert_one_line_error(run_script("export/qdq_check.py", text), "notes.onnx", "not an ONNX")
    assert_one_line_error(run_script("export/qdq_check.py", tmp_path / "missing.onnx"), "missing.onnx",
                          "no such file")


@pytest.mark.slow
def test_module_imports_without_torch():
    code = "import export.qdq_check, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
