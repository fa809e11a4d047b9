"""Per-layer output widths of a checkpoint's ``arch`` (plain data: torch-free), for pruning reports.

    from roadseg.models.core.arch_widths import all_widths
    all_widths(report["original"]["arch"])     # [("enc0.conv1", 8), ("enc0.conv2", 8), ...]
"""

from __future__ import annotations


def all_widths(arch: dict) -> list[tuple[str, int]]:
    """(layer, output width) of every convolution an architecture names (U-Net or MobileUNet)."""
    rows = []
    if "encoder_blocks" in arch:  # MobileUNet
        rows.append(("stem", arch["stem_width"]))
        for level, blocks in enumerate(arch["encoder_blocks"]):
            for index, block in enumerate(blocks):
                rows += [(f"enc{level}.{index}.hidden", block["hidden"]), (f"enc{level}.{index}.out", block["out"])]
        return rows + [(f"dec{level}", width) for level, width in enumerate(arch["decoder_widths"])]
    for level, (a, b) in enumerate(arch["encoder_widths"]):
        rows += [(f"enc{level}.conv1", a), (f"enc{level}.conv2", b)]
    for level, (up, (a, b)) in enumerate(zip(arch["up_widths"], arch["decoder_widths"], strict=True)):
        rows += [(f"up{level}", up), (f"dec{level}.conv1", a), (f"dec{level}.conv2", b)]
    return rows
