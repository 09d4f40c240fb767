"""Blender synthetic datasets (``transforms_{train,val,test}.json`` + RGBA PNGs), as in the original NeRF."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..cameras import Cameras
from .images import read_image, resize_image
from .scene import DataError, Scene, Split

__all__ = ["load_blender", "BLENDER_NEAR", "BLENDER_FAR", "BLENDER_AABB"]

BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0
BLENDER_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
"""The box that holds every object of the Blender synthetic scenes (the convention of instant-ngp and nerfacc)."""
"""The original NeRF's bounds for the synthetic scenes (cameras at radius ~4 around a unit-sized object)."""


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise DataError(f"{path} must hold a JSON object, found {type(meta).__name__}")
    return meta


def _pose(frame: dict, index: int, path: Path) -> np.ndarray:
    if "transform_matrix" not in frame:
        raise DataError(f"{path}: frame {index} has no 'transform_matrix'")
    try:
        pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: frame {index} has a malformed 'transform_matrix': {err}") from err
    if pose.shape not in ((4, 4), (3, 4)):
        raise DataError(f"{path}: frame {index} 'transform_matrix' has shape {pose.shape}, expected 4x4")
    if not np.isfinite(pose).all():
        raise DataError(f"{path}: frame {index} 'transform_matrix' has non-finite values")
    rot = pose[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3):
        raise DataError(f"{path}: frame {index} 'transform_matrix' is not a rigid transform "
                        "(its rotation part is not orthonormal)")
    return pose[:3, :4]


def _load_split(root: Path, split: str, downscale: int) -> tuple[Split, dict]:
    path = root / f"transforms_{split}.json"
    meta = _read_json(path)
    if "camera_angle_x" not in meta:
        raise DataError(f"{path} has no 'camera_angle_x'")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{path} has no frames (the {split!r} split is empty)")
    images, poses, names = [], [], []
    root_resolved = root.resolve()
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise DataError(f"{path}: frame {i} has no 'file_path'")
        file_path = (root / frame["file_path"]).resolve()
        if not file_path.is_relative_to(root_resolved):
            raise DataError(f"{path}: frame {i} file_path {frame['file_path']!r} points outside the dataset "
                            f"folder {root}")
        if file_path.suffix == "":
            file_path = file_path.with_suffix(".png")
        image = read_image(file_path)
        if images and image.shape != images[0].shape and downscale == 1:
            raise DataError(f"{file_path} is {image.shape[1]}x{image.shape[0]} but earlier images are "
                            f"{images[0].shape[1]}x{images[0].shape[0]}")
        poses.append(_pose(frame, i, path))
        names.append(file_path.name)
        images.append(image)
    height, width = images[0].shape[:2]
    if downscale > 1:
        width, height = width // downscale, height // downscale
        images = [resize_image(im, width, height) for im in images]
    if any(im.shape != images[0].shape for im in images):
        raise DataError(f"images listed in {path} differ in size or channel count")
    fov = float(meta["camera_angle_x"])
    if not (math.isfinite(fov) and 0 < fov < math.pi):
        raise DataError(f"{path}: camera_angle_x = {fov} is not a field of view in (0, pi) radians")
    c2w = torch.from_numpy(np.stack(poses)).float()
    cameras = Cameras.from_fov(c2w, width, height, fov)
    return Split(torch.from_numpy(np.stack(images)), cameras, names), meta


def load_blender(root: str | Path, downscale: int = 1, splits: tuple[str, ...] = ("train", "val", "test")) -> Scene:
    """Loads a Blender synthetic scene.

    Args:
        root: folder with ``transforms_{split}.json`` and the images they list.
        downscale: integer factor to shrink images by (area averaging); intrinsics follow.
        splits: which splits to load; missing ``val``/``test`` files are skipped, a missing ``train`` is an error.

    Returns:
        a :class:`Scene` with near/far 2/6 and the box ``[-1.5, 1.5]^3`` of the synthetic scenes (or the
        ``nerfkit`` block's values when the dataset was written by nerfkit).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    if downscale < 1:
        raise DataError(f"downscale must be >= 1, got {downscale}")
    loaded: dict[str, Split] = {}
    extra: dict = {}
    for split in splits:
        if not (root / f"transforms_{split}.json").is_file():
            if split == "train":
                raise DataError(f"{root} is not a Blender dataset: transforms_train.json not found")
            continue
        loaded[split], meta = _load_split(root, split, downscale)
        extra = meta.get("nerfkit", extra) if isinstance(meta.get("nerfkit"), dict) else extra
    near = float(extra.get("near", BLENDER_NEAR))
    far = float(extra.get("far", BLENDER_FAR))
    aabb = torch.tensor(extra.get("aabb", BLENDER_AABB), dtype=torch.float32)
    return Scene(loaded, near, far, aabb, name=root.name, info={"format": "blender", "downscale": downscale})
