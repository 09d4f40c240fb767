"""Reading and writing images (through imageio / Pillow)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from .scene import DataError

__all__ = ["read_image", "write_image", "resize_image"]


def read_image(path: Path) -> np.ndarray:
    """Reads an 8-bit RGB or RGBA image as ``(H, W, 3|4)`` uint8; grey images become RGB."""
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        image = np.asarray(iio.imread(path))
    except Exception as err:  # imageio raises many types for corrupt files
        raise DataError(f"cannot read image {path}: {err}") from err
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    if image.dtype != np.uint8:
        raise DataError(f"image {path} has unsupported pixel type {image.dtype} (expected 8-bit)")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise DataError(f"image {path} has shape {image.shape}; expected an RGB or RGBA image")
    return image


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resizes ``(H, W, C)`` uint8 with area averaging (Pillow premultiplies alpha for RGBA)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    resample = Image.Resampling.BOX if width <= image.shape[1] else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def write_image(path: Path, image: np.ndarray) -> None:
    """Writes ``(H, W)`` or ``(H, W, C)`` uint8 (or float in [0, 1]) to a PNG/JPEG chosen by the suffix."""
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, image)
