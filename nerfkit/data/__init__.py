"""Datasets: format parsers, the built-in scene, ray sampling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .blender import load_blender
from .rays import RayBatch, RaySampler, composite
from .scene import DataError, Scene, Split

if TYPE_CHECKING:
    from ..train.config import DataConfig

__all__ = ["load_scene", "load_blender", "DataError", "Scene", "Split", "RayBatch", "RaySampler", "composite"]


def load_scene(cfg: "DataConfig") -> Scene:
    """The dataset a config names: the folder at ``cfg.path``, or the built-in scene (written on first use)."""
    if cfg.path is None:
        from .builtin import ensure_builtin_scene

        folder = ensure_builtin_scene(cfg.cache_dir, cfg.builtin)
        scene = load_blender(folder, cfg.downscale)
        scene.name = "builtin"
        return scene
    if not cfg.path.exists():
        raise DataError(f"--data.path {cfg.path} does not exist")
    return load_blender(cfg.path, cfg.downscale)
