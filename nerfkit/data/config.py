"""Data settings: which dataset, in which format, and how it is presented (also the ``--data.*`` CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .builtin import BuiltinSceneConfig

__all__ = ["DataConfig", "LLFFConfig", "NormalizeConfig", "DATA_FORMATS", "default_cache_dir"]

DATA_FORMATS = ("auto", "blender", "llff", "nerfstudio", "instant-ngp", "colmap")


def default_cache_dir() -> Path:
    """``$NERFKIT_CACHE``, else ``$XDG_CACHE_HOME/nerfkit``, else ``~/.cache/nerfkit``."""
    if os.environ.get("NERFKIT_CACHE"):
        return Path(os.environ["NERFKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nerfkit"


@dataclass
class NormalizeConfig:
    """How captured scenes (nerfstudio / instant-ngp transforms.json, COLMAP) are placed in nerfkit's frame. The
    transform is stored with the run, so renders and exports map back to the dataset's own frame."""

    orientation: Literal["up", "pca", "none"] = "up"
    """Rotate the scene so that the cameras' mean up vector is +z ('up'), or its principal axes are the
    coordinate axes, smallest variance on z ('pca'), or keep it ('none')."""
    center: Literal["poses", "focus", "none"] = "poses"
    """Move the origin to the mean camera position ('poses'), the point the cameras look at ('focus'), or keep
    it ('none')."""
    scale: bool = True
    """Scale the scene so that every camera lies within [-1, 1]^3."""
    aabb_from: Literal["auto", "points", "cameras"] = "auto"
    """The scene box: around the sparse points (COLMAP: 0.5-99.5 percentiles, enlarged by 10%), or the cameras'
    bounding box (a cube enlarged by 10%); 'auto' uses points when the dataset has them."""


@dataclass
class LLFFConfig:
    """LLFF forward-facing scenes (``poses_bounds.npy``)."""

    ndc: bool = True
    """Render in normalised device coordinates (the standard for forward-facing scenes; ignored with
    --data.llff.spherify)."""
    spherify: bool = False
    """Move the cameras onto a sphere around the scene centre (for 360-degree LLFF captures)."""
    bd_factor: float = 0.75
    """Rescale so that the nearest depth bound becomes 1 / bd-factor (LLFF's recentring and rescaling)."""

    def __post_init__(self) -> None:
        if not self.bd_factor > 0:
            raise ValueError(f"--data.llff.bd-factor must be > 0, got {self.bd_factor}")


@dataclass
class DataConfig:
    """Which data to train on and how to present it."""

    path: Path | None = None
    """Dataset folder (Blender synthetic, LLFF, nerfstudio or instant-ngp transforms.json, or COLMAP). Leave
    unset to use nerfkit's built-in procedural scene."""
    format: Literal["auto", "blender", "llff", "nerfstudio", "instant-ngp", "colmap"] = "auto"
    """The dataset's format; 'auto' tells it from the files in the folder."""
    downscale: int = 1
    """Shrink images by this integer factor (area averaging; LLFF and COLMAP use an images_N folder when there is
    one). Shrunk copies are cached under --data.cache-dir."""
    background: Literal["white", "black", "random"] = "random"
    """Background behind RGBA training images: a fixed colour, or a fresh random colour per ray every step."""
    eval_background: Literal["white", "black"] = "white"
    """Background for evaluation and rendering (white is the Blender protocol)."""
    masks: bool = True
    """Use the dataset's per-image masks when it has them: masked-out pixels are never drawn for training and
    are left out of evaluation metrics."""
    hold_every: int = 8
    """For datasets without split lists (LLFF, COLMAP, transforms.json without train/test filenames): every Nth
    image is held out for testing (the LLFF / Mip-NeRF 360 protocol); 0 keeps every image for training."""
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    """Placing captured scenes in nerfkit's frame."""
    llff: LLFFConfig = field(default_factory=LLFFConfig)
    """LLFF settings."""
    builtin: BuiltinSceneConfig = field(default_factory=BuiltinSceneConfig)
    """The built-in scene, used when no path is given."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    """Where the built-in scene and downscaled images are written (created on first use, reused after)."""

    def __post_init__(self) -> None:
        if self.downscale < 1:
            raise ValueError(f"--data.downscale must be >= 1, got {self.downscale}")
        if self.hold_every < 0:
            raise ValueError(f"--data.hold-every must be >= 0, got {self.hold_every}")
