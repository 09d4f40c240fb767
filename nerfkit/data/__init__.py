"""Datasets: format parsers, the built-in scene, ray sampling.

Every format parser produces :class:`~nerfkit.data.frames.Frames` (cameras and file names); one shared path
(:func:`~nerfkit.data.frames.finish_scene`) checks them, places the scene, loads images and masks and builds the
:class:`Scene`. :func:`load_scene` tells the format from the folder unless ``--data.format`` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .blender import load_blender
from .rays import RayBatch, RaySampler, composite
from .scene import DataError, Scene, Split

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = ["load_scene", "detect_format", "load_blender", "DataError", "Scene", "Split", "RayBatch", "RaySampler",
           "composite", "FORMAT_SIGNS"]

FORMAT_SIGNS = {
    "blender": ["transforms_train.json"],
    "nerfstudio": ["transforms.json (with 'camera_model')"],
    "instant-ngp": ["transforms.json"],
    "llff": ["poses_bounds.npy"],
    "colmap": ["sparse/0/cameras.bin|txt", "sparse/cameras.bin|txt", "colmap/sparse/0/cameras.bin|txt",
               "colmap/sparse/cameras.bin|txt", "cameras.bin|txt"],
}
"""What :func:`detect_format` looks for, by format (in the order it looks)."""


def detect_format(root: Path) -> str:
    """The format of the dataset folder ``root``, from the files it holds (see :data:`FORMAT_SIGNS`)."""
    if (root / "transforms_train.json").is_file():
        return "blender"
    if (root / "transforms.json").is_file():
        from .transforms_json import transforms_flavour

        return transforms_flavour(root / "transforms.json")
    if (root / "poses_bounds.npy").is_file():
        return "llff"
    from .colmap import colmap_model_dir

    if colmap_model_dir(root) is not None:
        return "colmap"
    looked = "; ".join(f"{', '.join(signs)} ({fmt})" for fmt, signs in FORMAT_SIGNS.items())
    raise DataError(f"cannot tell the dataset format of {root}: looked for {looked}. Pass --data.format to name it")


def load_scene(cfg: "DataConfig") -> Scene:
    """The dataset a config names: the folder at ``cfg.path`` (format detected unless ``cfg.format`` names it),
    or the built-in scene (written on first use)."""
    if cfg.path is None:
        from .builtin import ensure_builtin_scene

        folder = ensure_builtin_scene(cfg.cache_dir, cfg.builtin)
        scene = load_blender(folder, cfg.downscale, cfg=cfg)
        scene.name = "builtin"
        return scene
    root = Path(cfg.path)
    if not root.exists():
        raise DataError(f"--data.path {root} does not exist")
    if not root.is_dir():
        raise DataError(f"--data.path {root} is not a folder")
    fmt = detect_format(root) if cfg.format == "auto" else cfg.format
    if fmt == "blender":
        return load_blender(root, cfg.downscale, cfg=cfg)
    if fmt == "llff":
        from .llff import load_llff

        return load_llff(root, cfg)
    if fmt in ("nerfstudio", "instant-ngp"):
        from .transforms_json import load_transforms_json

        return load_transforms_json(root, cfg, flavour=fmt)
    if fmt == "colmap":
        from .colmap import load_colmap

        return load_colmap(root, cfg)
    raise DataError(f"unknown --data.format {fmt!r}")
