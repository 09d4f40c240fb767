"""Drawing training rays from a split's images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .scene import DataError, Split

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
    """Random pixels across all images of a split; images (and masks) stay uint8 / bool on their device.

    Every call draws a *global* batch of ``n_rays * world_size`` pixels and returns this process's share
    (``rank``), so that processes of a distributed run that share a seed draw different rays, and together
    exactly the rays one process would draw for the combined batch. Pixels that the split's masks exclude are
    never drawn (rejection sampling, so no index of valid pixels is ever built).

    Args:
        split: the images and cameras to draw from (its device is the sampling device).
        rank, world_size: this process's index and the number of processes drawing together.
    """

    def __init__(self, split: Split, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.split, self.rank, self.world_size = split, rank, world_size
        n, self.height, self.width, channels = split.images.shape
        self.n_pixels = n * self.height * self.width
        self.pixels = split.images.reshape(self.n_pixels, channels)
        self.valid = None if split.masks is None else split.masks.reshape(self.n_pixels)
        self.valid_fraction = 1.0
        if self.valid is not None:
            self.valid_fraction = float(self.valid.float().mean())
            if self.valid_fraction == 0.0:
                raise DataError("every pixel of the training images is masked out: nothing to train on")

    def _to_rgba(self, pixels: Tensor) -> Tensor:
        rgba = pixels.float() / 255.0
        if rgba.shape[-1] == 3:
            rgba = torch.cat([rgba, torch.ones_like(rgba[..., :1])], dim=-1)
        return rgba

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` flat pixel indices, uniform over the valid pixels."""
        device = self.pixels.device
        if self.valid is None:
            return torch.randint(0, self.n_pixels, (n,), device=device, generator=generator)
        found, have = [], 0
        while have < n:  # each round draws enough candidates to finish with high probability
            want = int((n - have) / self.valid_fraction * 1.1) + 16
            cand = torch.randint(0, self.n_pixels, (want,), device=device, generator=generator)
            cand = cand[self.valid[cand]]
            found.append(cand)
            have += cand.numel()
        return torch.cat(found)[:n]

    def sample(self, n_rays: int, generator: torch.Generator | None = None) -> RayBatch:
        """``n_rays`` rays through uniformly random (valid) pixel centres of uniformly random images."""
        if n_rays < 1:
            raise ValueError(f"n_rays must be >= 1, got {n_rays}")
        flat = self._draw(n_rays * self.world_size, generator)
        flat = flat[self.rank * n_rays:(self.rank + 1) * n_rays]
        cam = flat // (self.height * self.width)
        rem = flat % (self.height * self.width)
        y, x = rem // self.width, rem % self.width
        origins, directions = self.split.cameras.rays(cam, x.float() + 0.5, y.float() + 0.5)
        return RayBatch(origins, directions, self._to_rgba(self.pixels.index_select(0, flat)))

    def image(self, index: int) -> RayBatch:
        """Every ray of image ``index``, row-major: ``(H * W, ...)``."""
        origins, directions = self.split.cameras.image_rays(index)
        return RayBatch(origins.reshape(-1, 3), directions.reshape(-1, 3),
                        self._to_rgba(self.split.images[index].reshape(-1, self.split.images.shape[-1])))
