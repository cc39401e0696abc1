"""Bilinear resizing of NCHW image batches, in bounded chunks.

One implementation for every place that changes resolution (upsampling the 8x8 digits, squaring
non-square uploads, the split's working resolution), so a dataset looks the same whichever path
resized it. Antialiasing is on only when shrinking: plain bilinear sampling skips pixels when
downsampling and aliases fine detail into moire, while for upsampling the two are identical.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Images per interpolate call: keeps the temporary float tensors to a few tens of MB at 64x64x3.
_CHUNK = 1024


def resize_float(images: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Resize float32 NCHW images to `height` x `width` (square when width is omitted)."""
    width = height if width is None else width
    n, channels = images.shape[:2]
    if images.shape[2:] == (height, width):
        return images.astype(np.float32, copy=False)
    shrinking = height < images.shape[2] or width < images.shape[3]
    out = np.empty((n, channels, height, width), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + _CHUNK], dtype=np.float32))
        resized = F.interpolate(chunk, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)
        out[start : start + _CHUNK] = resized.numpy()
    return out


def resize_uint8(images: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Resize uint8 NCHW images, rounding back to uint8 (loaders keep pixels as uint8)."""
    width = height if width is None else width
    if images.shape[2:] == (height, width):
        return images
    out = np.empty((images.shape[0], images.shape[1], height, width), dtype=np.uint8)
    for start in range(0, images.shape[0], _CHUNK):
        resized = resize_float(images[start : start + _CHUNK].astype(np.float32), height, width)
        out[start : start + _CHUNK] = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    return out
