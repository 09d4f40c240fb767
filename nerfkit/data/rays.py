"""Drawing training rays from a split's images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .scene import Split

__all__ = ["RayBatch", "RaySampler", "composite"]


@dataclass
class RayBatch:
    """``origins, directions (n, 3)``; ``rgba (n, 4)`` float in [0, 1] (alpha 1 for RGB datasets)."""

    origins: Tensor
    directions: Tensor
    rgba: Tensor


def composite(rgba: Tensor, background: Tensor) -> Tensor:
    """Colour of un-premultiplied ``rgba (..., 4)`` over ``background (..., 3)``: ``(..., 3)``."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


class RaySampler:
    """Random pixels across all images of a split; images stay uint8 on their device.

    Args:
        split: the images and cameras to draw from (its device is the sampling device).
    """

    def __init__(self, split: Split) -> None:
        self.split = split
        n, self.height, self.width, channels = split.images.shape
        self.n_pixels = n * self.height * self.width
        self.pixels = split.images.reshape(self.n_pixels, channels)

    def _to_rgba(self, pixels: Tensor) -> Tensor:
        rgba = pixels.float() / 255.0
        if rgba.shape[-1] == 3:
            rgba = torch.cat([rgba, torch.ones_like(rgba[..., :1])], dim=-1)
        return rgba

    def sample(self, n_rays: int, generator: torch.Generator | None = None) -> RayBatch:
        """``n_rays`` rays through uniformly random pixel centres of uniformly random images."""
        device = self.pixels.device
        flat = torch.randint(0, self.n_pixels, (n_rays,), device=device, generator=generator)
        cam = flat // (self.height * self.width)
        rem = flat % (self.height * self.width)
        y, x = rem // self.width, rem % self.width
        origins, directions = self.split.cameras.rays(cam, x.float() + 0.5, y.float() + 0.5)
        return RayBatch(origins, directions, self._to_rgba(self.pixels[flat]))

    def image(self, index: int) -> RayBatch:
        """Every ray of image ``index``, row-major: ``(H * W, ...)``."""
        origins, directions = self.split.cameras.image_rays(index)
        return RayBatch(origins.reshape(-1, 3), directions.reshape(-1, 3),
                        self._to_rgba(self.split.images[index].reshape(-1, self.split.images.shape[-1])))
