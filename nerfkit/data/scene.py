"""The dataset object every loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..cameras import Cameras

__all__ = ["Split", "Scene", "DataError"]


class DataError(ValueError):
    """A dataset could not be read; the message names the file and what is wrong."""


@dataclass
class Split:
    """One split of a dataset.

    Attributes:
        images: ``(n, H, W, C)`` uint8 images, ``C = 3`` (RGB) or ``4`` (RGBA, un-premultiplied colour).
        cameras: the ``n`` cameras.
        names: the ``n`` image file names, for reports.
    """

    images: Tensor
    cameras: Cameras
    names: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] not in (3, 4):
            raise ValueError(f"images must be uint8 (n, H, W, 3|4), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        n, h, w = self.images.shape[:3]
        if len(self.cameras) != n or (self.cameras.height, self.cameras.width) != (h, w):
            raise ValueError(f"{n} images of {w}x{h} do not match {len(self.cameras)} cameras of "
                             f"{self.cameras.width}x{self.cameras.height}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.cameras.to(device), self.names)


@dataclass
class Scene:
    """A dataset: named splits plus the scene's bounds.

    Attributes:
        splits: ``{"train": ..., "val": ..., "test": ...}`` (some may be absent).
        near, far: bounds on the distance along any ray where the scene lies (world units).
        aabb: optional ``(6,)`` box ``[xmin, ymin, zmin, xmax, ymax, zmax]`` that holds the scene.
        name: a short label for reports.
    """

    splits: dict[str, Split]
    near: float
    far: float
    aabb: Tensor | None = None
    name: str = ""
    info: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"dataset {self.name!r} has no {name!r} split (it has: {', '.join(self.splits)})")
        return self.splits[name]
