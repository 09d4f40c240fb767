"""Blender synthetic datasets (``transforms_{train,val,test}.json`` + RGBA PNGs), as in the original NeRF."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .frames import Frames, check_pose, finish_scene, image_size, inside_root
from .scene import DataError, Scene

__all__ = ["load_blender", "parse_blender", "read_json", "BLENDER_NEAR", "BLENDER_FAR", "BLENDER_AABB"]

BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0
"""The original NeRF's bounds for the synthetic scenes (cameras at radius ~4 around a unit-sized object)."""
BLENDER_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
"""The box that holds every object of the Blender synthetic scenes (the convention of instant-ngp and nerfacc)."""


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a :class:`DataError` naming the file when it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError as err:
        raise DataError(f"{path} not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise DataError(f"{path} must hold a JSON object, found {type(meta).__name__}")
    return meta


def parse_blender(root: str | Path, splits: tuple[str, ...] = ("train", "val", "test"), downscale: int = 1) -> Frames:
    """The cameras of a Blender scene: one ``transforms_{split}.json`` per split (missing ``val``/``test`` files
    are skipped, a missing ``train`` is an error)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    if downscale < 1:
        raise DataError(f"downscale must be >= 1, got {downscale}")
    paths, poses, fovs, split_idx, extra = [], [], [], {}, {}
    source = root / "transforms_train.json"
    for split in splits:
        path = root / f"transforms_{split}.json"
        if not path.is_file():
            if split == "train":
                raise DataError(f"{root} is not a Blender dataset: transforms_train.json not found")
            continue
        meta = read_json(path)
        if "camera_angle_x" not in meta:
            raise DataError(f"{path} has no 'camera_angle_x'")
        try:
            fov = float(meta["camera_angle_x"])
        except (TypeError, ValueError) as err:
            raise DataError(f"{path}: camera_angle_x is not a number: {meta['camera_angle_x']!r}") from err
        if not (math.isfinite(fov) and 0 < fov < math.pi):
            raise DataError(f"{path}: camera_angle_x = {fov} is not a field of view in (0, pi) radians")
        frames = meta.get("frames")
        if not isinstance(frames, list) or not frames:
            raise DataError(f"{path} has no frames (the {split!r} split is empty)")
        if isinstance(meta.get("nerfkit"), dict):
            extra = meta["nerfkit"]
        start = len(paths)
        for i, frame in enumerate(frames):
            if not isinstance(frame, dict) or "file_path" not in frame:
                raise DataError(f"{path}: frame {i} has no 'file_path'")
            if "transform_matrix" not in frame:
                raise DataError(f"{path}: frame {i} has no 'transform_matrix'")
            file_path = inside_root(root, str(frame["file_path"]), f"{path}: frame {i} file_path")
            if file_path.suffix == "":
                file_path = file_path.with_suffix(".png")
            poses.append(check_pose(frame["transform_matrix"], f"{path}: frame {i} 'transform_matrix'"))
            paths.append(file_path)
            fovs.append(fov)
        split_idx[split] = np.arange(start, len(paths))
    try:
        near, far = float(extra.get("near", BLENDER_NEAR)), float(extra.get("far", BLENDER_FAR))
        aabb = np.asarray(extra.get("aabb", BLENDER_AABB), dtype=float).reshape(6)
    except (TypeError, ValueError) as err:
        raise DataError(f"{root}: the 'nerfkit' block's near / far / aabb are malformed: {err}") from err
    width, height = image_size(paths[0])
    n = len(paths)
    focal = 0.5 * width / np.tan(0.5 * np.asarray(fovs))
    return Frames(source=source, root=root, image_paths=paths, c2w=np.stack(poses), fx=focal, fy=focal.copy(),
                  cx=np.full(n, width / 2.0), cy=np.full(n, height / 2.0), width=np.full(n, width),
                  height=np.full(n, height), splits=split_idx, near=near, far=far, aabb=aabb,
                  normalize=False, downscale=downscale, format="blender")


def load_blender(root: str | Path, downscale: int = 1, splits: tuple[str, ...] = ("train", "val", "test"),
                 cfg=None) -> Scene:
    """Loads a Blender synthetic scene.

    Args:
        root: folder with ``transforms_{split}.json`` and the images they list.
        downscale: integer factor to shrink images by (area averaging); intrinsics follow.
        splits: which splits to load; missing ``val``/``test`` files are skipped, a missing ``train`` is an error.
        cfg: a :class:`~nerfkit.data.config.DataConfig` for the cache folder (default: no cache).

    Returns:
        a :class:`Scene` with near/far 2/6 and the box ``[-1.5, 1.5]^3`` of the synthetic scenes (or the
        ``nerfkit`` block's values when the dataset was written by nerfkit).
    """
    from .config import DataConfig

    if cfg is None:
        cfg = DataConfig(path=Path(root), downscale=downscale, cache_dir=None)  # type: ignore[arg-type]
    return finish_scene(parse_blender(root, splits, downscale), cfg)
