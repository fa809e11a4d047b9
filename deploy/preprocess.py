"""Pre- and post-processing at run time, in numpy and OpenCV (no torch).

The same steps as evaluation in train/: the frame is resized to the model's input size
(area averaging when shrinking, like torchvision's antialiased resize; bilinear when enlarging)
and normalised with the mean/std the model was trained with; the logits are resized back to the
frame's size bilinearly and the argmax taken there.

    from roadseg.deploy.preprocess import preprocess, logits_to_classes
    batch = preprocess(rgb, info.input_size, info.mean, info.std)      # (1, 3, H, W) float32
    classes = logits_to_classes(session.run(None, {"image": batch})[0][0], rgb.shape[:2])
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def resize_image(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    height, width = size_hw
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def preprocess(rgb: np.ndarray, input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
               bgr: bool = False) -> np.ndarray:
    """An RGB uint8 HxWx3 frame -> a normalised (1, 3, H, W) float32 batch at ``input_size``. ``bgr=True``
    takes OpenCV's BGR frame as it is decoded: the channels are swapped after the resize, on the small
    image (resizing treats channels alike, so the batch is the same as converting the frame first)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 {'BGR' if bgr else 'RGB'} frame, got shape {rgb.shape}")
    batch = cv2.dnn.blobFromImage(resize_image(rgb, input_size), swapRB=bgr)  # float32 NCHW, laid out in C++
    # (x / 255 - mean) / std as one multiply-add per pixel
    scale = 1.0 / (255.0 * np.asarray(std, np.float32))
    batch *= scale[None, :, None, None]
    batch -= (np.asarray(mean, np.float32) / np.asarray(std, np.float32))[None, :, None, None]
    return batch


def logits_to_classes(logits: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(C, h, w) logits -> uint8 class map of ``size_hw``: bilinear resize of the logits, then argmax."""
    height, width = size_hw
    if logits.shape[0] == 2:
        # Two classes: resizing is linear, so resize(l1) - resize(l0) = resize(l1 - l0): one channel
        # to resize instead of two, and no argmax over a strided axis (3x faster at 960x540).
        margin = np.ascontiguousarray(logits[1] - logits[0], dtype=np.float32)
        if margin.shape != (height, width):
            margin = cv2.resize(margin, (width, height), interpolation=cv2.INTER_LINEAR)
        return (margin > 0).astype(np.uint8)
    if logits.shape[1:] != (height, width):
        # OpenCV resizes each channel of an HxWxC array alike (up to 512 channels)
        logits = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0), dtype=np.float32), (width, height),
                            interpolation=cv2.INTER_LINEAR)
        logits = logits.reshape(height, width, -1).transpose(2, 0, 1)
    return logits.argmax(axis=0).astype(np.uint8)
