from __future__ import annotations

import pytest
import torch

from roadseg.models.checkpoint import build_model
from roadseg.models.complexity import count_params, count_params_and_macs
from roadseg.models.unet import UNet

UNEVEN = {
    "depth": 3,
    "encoder_widths": [[5, 8], [11, 16], [13, 24], [40, 32]],
    "up_widths": [21, 8, 16],
    "decoder_widths": [[17, 24], [9, 16], [8, 7]],
}


def test_standard_unet_has_paper_parameter_count():
    model = UNet.from_base_width(base_width=64, depth=4)
    assert count_params(model) == 31_037_698


@pytest.mark.parametrize("norm", ["bn", "gn"])
@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("separable", [False, True])
def test_family_members_keep_resolution_and_classes(norm, up, separable):
    model = UNet.from_base_width(8, depth=3, norm=norm, up=up, separable=separable, num_classes=2).eval()
    out = model(torch.randn(2, 3, 32, 48))
    assert out.shape == (2, 2, 32, 48)


def test_input_not_multiple_of_two_to_the_depth_is_refused_clearly():
    model = UNet.from_base_width(8, depth=4)
    with pytest.raises(ValueError, match=r"not a multiple of 16"):
        model(torch.randn(1, 3, 40, 64))
    with pytest.raises(ValueError, match=r"not a multiple of 16"):
        model.check_input_size(0, 0)


def test_arch_reads_widths_from_live_layers_and_rebuilds_uneven_network_exactly():
    torch.manual_seed(0)
    for norm in ("bn", "gn"):
        model = UNet(norm=norm, up="bilinear" if norm == "gn" else "transpose", **UNEVEN).eval()
        arch = model.arch()
        assert arch["encoder_widths"] == UNEVEN["encoder_widths"]
        assert arch["up_widths"] == UNEVEN["up_widths"]
        rebuilt = build_model(arch).eval()
        rebuilt.load_state_dict(model.state_dict())
        x = torch.randn(1, 3, 32, 64)
        assert torch.equal(model(x), rebuilt(x))


def test_macs_scale_with_input_area_and_params_match():
    model = UNet.from_base_width(8, depth=3)
    small = count_params_and_macs(model, (32, 64))
    large = count_params_and_macs(model, (64, 128))
    assert small["params"] == count_params(model)
    assert large["macs"] == pytest.approx(4 * small["macs"], rel=1e-6)
    assert model.training  # counting must not leave the model in eval mode
