"""Reading and writing images (through imageio / Pillow), loading many at once, and caching shrunk copies."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from .scene import DataError

__all__ = ["read_image", "write_image", "resize_image", "read_mask", "load_images", "load_masks", "CACHE_VERSION"]

CACHE_VERSION = 1
"""Bump when the way shrunk copies are made changes: it is part of their cache key."""


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
    if image.ndim == 3 and image.shape[-1] == 2:  # grey + alpha
        image = np.concatenate([np.repeat(image[..., :1], 3, axis=-1), image[..., 1:]], axis=-1)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise DataError(f"image {path} has shape {image.shape}; expected an RGB or RGBA image")
    return image


def read_mask(path: Path) -> np.ndarray:
    """Reads a mask image as ``(H, W)`` uint8 0/255: any non-zero value (of the first channel) keeps a pixel."""
    if not path.is_file():
        raise DataError(f"mask file not found: {path}")
    try:
        mask = np.asarray(iio.imread(path))
    except Exception as err:
        raise DataError(f"cannot read mask {path}: {err}") from err
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise DataError(f"mask {path} has shape {mask.shape}; expected a single-channel image")
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resizes ``(H, W)`` or ``(H, W, C)`` uint8 with area averaging (Pillow premultiplies alpha for RGBA)."""
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


def _cache_key(paths: list[Path], downscale: int, kind: str) -> str:
    """A key that changes whenever a source file changes (path, size, modification time) or the recipe does."""
    h = hashlib.sha256(f"{CACHE_VERSION}:{kind}:{downscale}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"\n{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _load_all(paths: list[Path], read, downscale: int, threads: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decodes ``paths`` in a thread pool into one preallocated array, shrinking each by ``downscale``.

    Returns the stacked array and the full-resolution ``(width, height)`` shared by all files."""
    first = read(paths[0])
    full_h, full_w = first.shape[:2]
    width, height = full_w // downscale, full_h // downscale
    if width < 1 or height < 1:
        raise DataError(f"--data.downscale {downscale} is too large for {paths[0]} ({full_w}x{full_h})")
    out = np.empty((len(paths), height, width) + first.shape[2:], dtype=np.uint8)

    def one(i: int) -> None:
        image = first if i == 0 else read(paths[i])
        if image.shape != first.shape:
            raise DataError(f"{paths[i]} is {image.shape[1]}x{image.shape[0]} with {_channels(image)} but "
                            f"{paths[0]} is {full_w}x{full_h} with {_channels(first)}: all images of a dataset "
                            "must have the same size and channels")
        out[i] = resize_image(image, width, height)

    workers = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow and zlib release the GIL while decoding
        list(pool.map(one, range(len(paths))))
    return out, (full_w, full_h)


def _channels(image: np.ndarray) -> str:
    return {2: "1 channel", 3: f"{image.shape[-1]} channels"}.get(image.ndim, "?")


def _cached(paths: list[Path], read, downscale: int, cache_dir: Path | None, kind: str,
            threads: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    if downscale == 1 or cache_dir is None:
        return _load_all(paths, read, downscale, threads)
    folder = Path(cache_dir) / "downscaled"
    key = _cache_key(paths, downscale, kind)
    data, meta = folder / f"{key}.npy", folder / f"{key}.json"
    if data.is_file() and meta.is_file():
        try:
            return np.load(data), tuple(json.loads(meta.read_text())["full_size"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    array, size = _load_all(paths, read, downscale, threads)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp.npy"
        np.save(tmp, array)
        os.replace(tmp, data)
        meta.write_text(json.dumps({"full_size": list(size), "downscale": downscale, "kind": kind,
                                    "first": str(paths[0]), "count": len(paths)}))
    except OSError:  # a read-only cache only costs speed
        pass
    return array, size


def load_images(paths: list[Path], downscale: int = 1, cache_dir: Path | None = None,
                threads: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Loads images as one ``(n, H, W, C)`` uint8 array, each shrunk by ``downscale`` (area averaging).

    Files are decoded in parallel threads. Shrunk copies are cached in ``cache_dir/downscaled`` under a key of
    the files' paths, sizes and modification times, so a changed source is never served stale; the user's
    files are only read.

    Returns:
        the images and the full-resolution ``(width, height)`` of the files.
    """
    if not paths:
        raise DataError("no images to load")
    return _cached(paths, read_image, downscale, cache_dir, "image", threads)


def load_masks(paths: list[Path], downscale: int = 1, cache_dir: Path | None = None,
               threads: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Loads masks as ``(n, H, W)`` bool (``True`` keeps a pixel); shrunk masks keep pixels that are at least
    half kept. Returns the masks and the files' full-resolution ``(width, height)``."""
    masks, size = _cached(paths, read_mask, downscale, cache_dir, "mask", threads)
    return masks >= 128, size
