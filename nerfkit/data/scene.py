"""The dataset object every loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..cameras import Cameras

__all__ = ["Split", "Scene", "DataError"]


class DataError(ValueError):
    """A dataset could not be read; the message names the file and what is wrong."""


class Split:
    """One split of a dataset. Its cameras and names are known at once; its pixels can be loaded on first use
    (:meth:`lazy`), so a split that is never rendered is never decoded.

    Attributes:
        images: ``(n, H, W, C)`` uint8 images, ``C = 3`` (RGB) or ``4`` (RGBA, un-premultiplied colour).
        cameras: the ``n`` cameras.
        names: the ``n`` image file names, for reports.
        masks: optional ``(n, H, W)`` bool: ``False`` marks pixels to ignore (never drawn for training, left out
            of evaluation metrics).
    """

    def __init__(self, images: Tensor, cameras: Cameras, names: list[str], masks: Tensor | None = None) -> None:
        self.cameras, self.names = cameras, list(names)
        self._loader = None
        self._set(images, masks)

    @classmethod
    def lazy(cls, loader: Callable[[], tuple[Tensor, Tensor | None]], cameras: Cameras, names: list[str]) -> "Split":
        """A split whose ``loader() -> (images, masks)`` runs when its pixels are first needed."""
        split = cls.__new__(cls)
        split.cameras, split.names, split._loader = cameras, list(names), loader
        split._images = split._masks = None
        return split

    def _set(self, images: Tensor, masks: Tensor | None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] not in (3, 4):
            raise ValueError(f"images must be uint8 (n, H, W, 3|4), got {images.dtype} {tuple(images.shape)}")
        n, h, w = images.shape[:3]
        if len(self.cameras) != n or (self.cameras.height, self.cameras.width) != (h, w):
            raise ValueError(f"{n} images of {w}x{h} do not match {len(self.cameras)} cameras of "
                             f"{self.cameras.width}x{self.cameras.height}")
        if masks is not None and (masks.dtype != torch.bool or tuple(masks.shape) != (n, h, w)):
            raise ValueError(f"masks must be bool ({n}, {h}, {w}), got {masks.dtype} {tuple(masks.shape)}")
        self._images, self._masks = images, masks

    def _load(self) -> None:
        if self._images is None:
            self._set(*self._loader())
            self._loader = None

    @property
    def loaded(self) -> bool:
        """Whether the pixels are in memory."""
        return self._images is not None

    @property
    def images(self) -> Tensor:
        self._load()
        return self._images

    @property
    def masks(self) -> Tensor | None:
        self._load()
        return self._masks

    def __len__(self) -> int:
        return len(self.cameras)

    def to(self, device: torch.device | str) -> "Split":
        """The split on ``device`` (its pixels are loaded first; on their own device nothing is copied)."""
        self._load()
        masks = None if self._masks is None else self._masks.to(device)
        return Split(self._images.to(device), self.cameras.to(device), self.names, masks)


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

    def summary(self) -> dict:
        """The scene's placement and bounds as plain JSON values (written to a run's ``scene.json``, so that
        tools can map its cameras and renders back to the dataset's frame without the dataset)."""
        return {"name": self.name, "near": self.near, "far": self.far,
                "aabb": None if self.aabb is None else [float(v) for v in self.aabb],
                "transform": self.transform.tolist(), "scale": self.scale, "forward_facing": self.forward_facing,
                "splits": {name: len(split) for name, split in self.splits.items()},
                "info": {k: v for k, v in self.info.items() if isinstance(v, (str, int, float, bool, list))}}

    def eval_split(self) -> Split | None:
        """The split to validate on during training: ``val``, else ``test``, else none."""
        return self.splits.get("val") or self.splits.get("test")

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"dataset {self.name!r} has no {name!r} split (it has: {', '.join(self.splits)})")
        return self.splits[name]
