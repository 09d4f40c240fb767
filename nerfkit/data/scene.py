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
        masks: optional ``(n, H, W)`` bool: ``False`` marks pixels to ignore (never drawn for training, left out
            of evaluation metrics).
    """

    images: Tensor
    cameras: Cameras
    names: list[str]
    masks: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] not in (3, 4):
            raise ValueError(f"images must be uint8 (n, H, W, 3|4), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        n, h, w = self.images.shape[:3]
        if len(self.cameras) != n or (self.cameras.height, self.cameras.width) != (h, w):
            raise ValueError(f"{n} images of {w}x{h} do not match {len(self.cameras)} cameras of "
                             f"{self.cameras.width}x{self.cameras.height}")
        if self.masks is not None and (self.masks.dtype != torch.bool or tuple(self.masks.shape) != (n, h, w)):
            raise ValueError(f"masks must be bool ({n}, {h}, {w}), got {self.masks.dtype} {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> "Split":
        masks = None if self.masks is None else self.masks.to(device)
        return Split(self.images.to(device), self.cameras.to(device), self.names, masks)


@dataclass
class Scene:
    """A dataset: named splits plus the scene's bounds.

    Attributes:
        splits: ``{"train": ..., "val": ..., "test": ...}`` (some may be absent).
        near, far: bounds on the distance along any ray where the scene lies (world units).
        aabb: optional ``(6,)`` box ``[xmin, ymin, zmin, xmax, ymax, zmax]`` that holds the scene.
        name: a short label for reports.
        info: facts for reports (format, downscale, ...).
        transform: ``(4, 4)`` float64 similarity from the dataset's own world frame to the scene frame the
            cameras are in (rotation and uniform scale in the upper 3x3, then a translation); identity when the
            loader did not move the scene. Renders and exports map back with :meth:`to_dataset_frame`.
        forward_facing: the cameras all look one way at a scene in front of them (LLFF): renders follow a
            spiral path instead of an orbit.
    """

    splits: dict[str, Split]
    near: float
    far: float
    aabb: Tensor | None = None
    name: str = ""
    info: dict = field(default_factory=dict)
    transform: Tensor = field(default_factory=lambda: torch.eye(4, dtype=torch.float64))
    forward_facing: bool = False

    @property
    def scale(self) -> float:
        """The uniform scale of :attr:`transform` (scene units per dataset unit)."""
        return float(torch.linalg.det(self.transform[:3, :3]).abs() ** (1.0 / 3.0))

    def to_dataset_frame(self, c2w: Tensor) -> Tensor:
        """Camera-to-world matrices ``(..., 3, 4)`` of the scene frame, expressed in the dataset's own frame
        (the inverse of :attr:`transform`; rotations stay orthonormal)."""
        inv = torch.linalg.inv(self.transform).to(c2w)
        rot = inv[:3, :3] * self.scale
        return torch.cat([rot @ c2w[..., :3, :3], (inv[:3, :3] @ c2w[..., :3, 3:]) + inv[:3, 3:]], dim=-1)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"dataset {self.name!r} has no {name!r} split (it has: {', '.join(self.splits)})")
        return self.splits[name]
