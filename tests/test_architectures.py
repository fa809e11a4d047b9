"""MobileUNet and the torchvision peers: shapes, rebuild from arch (also after pruning), export,
INT8 QAT placement, and the --arch flags."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from roadseg.compress.prune import all_widths, head_input_conv, prune_once
from roadseg.deploy.latency import onnx_session
from roadseg.export.onnx_export import onnx_bytes
from roadseg.models.checkpoint import build_model, load_model, make_checkpoint, save_checkpoint
from roadseg.models.complexity import count_params_and_macs
from roadseg.models.core.model_metadata import ModelInfo
from roadseg.models.mobile_unet import MobileUNet
from roadseg.models.peers import PEERS
from tests.conftest import assert_one_line_error, run_script

SIZE = (64, 96)


@pytest.mark.parametrize("kwargs", [{}, {"head_stride": 4}, {"head_stride": 1}, {"act": "relu", "norm": "gn"},
                                    {"depth": 2}])
def test_mobile_unet_shapes_and_exact_rebuild(kwargs):
    torch.manual_seed(0)
    model = MobileUNet.from_width_mult(0.5, **kwargs).eval()
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 2, *SIZE)
        rebuilt = build_model(model.arch()).eval()
        rebuilt.load_state_dict(model.state_dict())
        assert torch.equal(rebuilt(x), out)
    assert ModelInfo(arch=model.arch(), meta={}).size_multiple == model.size_multiple == 2 ** (model.depth + 1)


def test_mobile_unet_does_no_work_at_full_resolution_and_is_cheaper_than_unet():
    from roadseg.models.unet import UNet

    mobile, unet = MobileUNet.from_width_mult(1.0), UNet.from_base_width(8, depth=4)
    seen = []
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append(o.shape[-2:]))
             for m in mobile.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        mobile.eval()(torch.zeros(1, 3, *SIZE))
    for hook in hooks:
        hook.remove()
    assert max(h * w for h, w in seen) == (SIZE[0] // 2) * (SIZE[1] // 2)  # the stem's stride-2 output
    size = (352, 480)
    assert count_params_and_macs(mobile, size)["gmacs"] < 0.2 * count_params_and_macs(unet, size)["gmacs"]
    with pytest.raises(ValueError, match="multiple of 16"):
        mobile(torch.zeros(1, 3, 40, 96))


def test_pruned_mobile_unet_rebuilds_from_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = MobileUNet.from_width_mult(1.0).eval()
    before = count_params_and_macs(model, SIZE)["params"]
    prune_once(model, 0.5, "l2", "global", 8, SIZE)
    assert count_params_and_macs(model, SIZE)["params"] < 0.6 * before
    assert model.outc.out_channels == 2 and all(w % 8 == 0 for _, w in all_widths(model.arch()))
    save_checkpoint(tmp_path / "p.pt", make_checkpoint(model, {"stage": "pruned", "input_size": list(SIZE)}))
    rebuilt, _ = load_model(tmp_path / "p.pt")
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    assert head_input_conv(model) is model.decoder[-1].pointwise.conv


def test_mobile_unet_exports_with_dynamic_size_and_quantizes_every_conv():
    from roadseg.models.quantization import quantize

    model = MobileUNet.from_width_mult(0.5).eval()
    session = onnx_session(onnx_bytes(model, SIZE))
    for shape in ((1, 3, *SIZE), (2, 3, 96, 128)):
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, atol=1e-4)
    qmodel = quantize(copy.deepcopy(model), lambda m: m(torch.randn(2, 3, *SIZE)))
    convs = [m for m in qmodel.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight_quantizer.is_enabled and m.input_quantizer.is_enabled for m in convs)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peers_return_logits_and_rebuild(name):
    model = PEERS[name]().eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *SIZE))
    assert out.shape == (1, 2, *SIZE)
    assert build_model(model.arch()).arch() == model.arch() == {"name": name, "in_channels": 3, "num_classes": 2}


@pytest.mark.slow
def test_arch_flags(tmp_path):
    result = run_script("models/init_checkpoint.py", "--out", tmp_path, "--arch", "mobile_unet", "--width-mult",
                        "0.5", "--head-stride", "4", "--img-size", "64", "96")
    assert result.returncode == 0, result.stderr
    model, ckpt = load_model(tmp_path / "init.pt")
    assert isinstance(model, MobileUNet) and ckpt["arch"]["head_stride"] == 4
    bad = run_script("models/init_checkpoint.py", "--out", tmp_path / "b", "--arch", "mobile_unet",
                     "--img-size", "60", "96")
    assert_one_line_error(bad, "multiple of 16")
