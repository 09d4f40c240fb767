"""Pinhole cameras and pixel -> ray generation.

Conventions (fixed once for the whole package):

* camera-to-world matrices are ``(..., 3, 4)`` or ``(..., 4, 4)`` in the OpenGL/Blender convention:
  the camera looks down its local ``-z`` axis, ``+x`` is right and ``+y`` is up in the image;
* a pixel ``(x, y)`` (column, row; row 0 at the top) has its centre at ``(x + 0.5, y + 0.5)``;
* ray directions are unit length, so the ray parameter ``t`` is a distance in world units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Cameras", "camera_directions", "rays_from_pixels", "look_at"]


@dataclass
class Cameras:
    """A set of ``n`` pinhole cameras.

    Attributes:
        c2w: ``(n, 3, 4)`` camera-to-world matrices (OpenGL convention).
        fx, fy, cx, cy: ``(n,)`` intrinsics in pixels.
        width, height: image size in pixels (shared by all cameras).
    """

    c2w: Tensor
    fx: Tensor
    fy: Tensor
    cx: Tensor
    cy: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.c2w.ndim != 3 or self.c2w.shape[-2:] not in ((3, 4), (4, 4)):
            raise ValueError(f"c2w must have shape (n, 3, 4) or (n, 4, 4), got {tuple(self.c2w.shape)}")
        self.c2w = self.c2w[:, :3, :4]
        n = self.c2w.shape[0]
        for name in ("fx", "fy", "cx", "cy"):
            value = torch.as_tensor(getattr(self, name), dtype=self.c2w.dtype, device=self.c2w.device)
            setattr(self, name, value.reshape(-1).expand(n).contiguous())
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @classmethod
    def from_fov(cls, c2w: Tensor, width: int, height: int, fov_x: float) -> "Cameras":
        """Cameras with square pixels, the principal point at the image centre and a horizontal field of
        view ``fov_x`` in radians (Blender's ``camera_angle_x``)."""
        focal = 0.5 * width / torch.tan(torch.as_tensor(0.5 * fov_x, dtype=torch.float64)).item()
        return cls(c2w, focal, focal, width / 2.0, height / 2.0, width, height)

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.c2w.to(device), self.fx.to(device), self.fy.to(device), self.cx.to(device),
                       self.cy.to(device), self.width, self.height)

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by ``factor`` (e.g. 0.5 for half resolution)."""
        width, height = round(self.width * factor), round(self.height * factor)
        sx, sy = width / self.width, height / self.height
        return Cameras(self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def rays(self, camera_indices: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Rays through pixel coordinates (pixel-centre offsets are added by the caller: pass
        ``x = column + 0.5`` for the centre). All inputs have the same shape ``(...)``.

        Returns:
            origins ``(..., 3)`` and unit directions ``(..., 3)``.
        """
        return rays_from_pixels(self.c2w[camera_indices], self.fx[camera_indices], self.fy[camera_indices],
                                self.cx[camera_indices], self.cy[camera_indices], x, y)

    def image_rays(self, index: int) -> tuple[Tensor, Tensor]:
        """All rays of camera ``index`` through pixel centres: origins and directions ``(height, width, 3)``."""
        device = self.c2w.device
        y, x = torch.meshgrid(torch.arange(self.height, device=device, dtype=self.c2w.dtype) + 0.5,
                              torch.arange(self.width, device=device, dtype=self.c2w.dtype) + 0.5, indexing="ij")
        idx = torch.full_like(x, index, dtype=torch.long)
        return self.rays(idx, x, y)


def camera_directions(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Un-normalised ray directions in camera space for pixel coordinates ``(x, y)``.

    Args: broadcastable tensors of shape ``(...)``.
    Returns: ``(..., 3)`` directions with ``z = -1`` (OpenGL: ``+y`` up, looking down ``-z``).
    """
    return torch.stack([(x - cx) / fx, -(y - cy) / fy, -torch.ones_like(x + y)], dim=-1)


def rays_from_pixels(c2w: Tensor, fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor, x: Tensor, y: Tensor
                     ) -> tuple[Tensor, Tensor]:
    """World-space rays through pixel coordinates.

    Args:
        c2w: ``(..., 3, 4)`` camera-to-world matrices, one per ray (or broadcastable).
        fx, fy, cx, cy, x, y: ``(...)`` intrinsics and pixel coordinates (``x + 0.5`` is a pixel centre).

    Returns:
        origins ``(..., 3)`` and unit directions ``(..., 3)``.
    """
    dirs_cam = camera_directions(fx, fy, cx, cy, x, y)
    dirs = (c2w[..., :3, :3] @ dirs_cam.unsqueeze(-1)).squeeze(-1)
    dirs = dirs / torch.linalg.vector_norm(dirs, dim=-1, keepdim=True)
    origins = c2w[..., :3, 3].expand_as(dirs)
    return origins, dirs


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """Camera-to-world matrices ``(..., 3, 4)`` for cameras at ``eye`` looking at ``target``.

    Args:
        eye, target, up: ``(..., 3)``; ``up`` is the world up direction (``+z`` in Blender scenes).
    """
    forward = target - eye
    forward = forward / torch.linalg.vector_norm(forward, dim=-1, keepdim=True)
    right = torch.linalg.cross(forward, up.expand_as(forward), dim=-1)
    right = right / torch.linalg.vector_norm(right, dim=-1, keepdim=True)
    true_up = torch.linalg.cross(right, forward, dim=-1)
    # Columns: x = right, y = up, z = backwards (the camera looks down -z), then the position.
    return torch.stack([right, true_up, -forward, eye], dim=-1)
