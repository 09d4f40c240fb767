"""Camera paths for videos (an orbit around a scene, a spiral in front of a forward-facing one) and writing
the video."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras, look_at
from ..data.normalize import focus_point

__all__ = ["orbit_cameras", "spiral_cameras", "write_video"]


def orbit_cameras(reference: Cameras, n_frames: int, elevation_deg: float | None = None) -> Cameras:
    """``n_frames`` cameras circling the point the reference cameras look at, with their intrinsics and mean
    distance; the orbit axis is the mean of their up vectors, the elevation their mean unless given."""
    c2w = reference.c2w.cpu().float()
    center = torch.from_numpy(focus_point(c2w.double().numpy())).float()
    up = c2w[:, :3, 1].mean(0)
    up = up / up.norm()
    offsets = c2w[:, :3, 3] - center
    radius = offsets.norm(dim=-1).mean()
    if elevation_deg is None:
        elevation = torch.asin((offsets @ up / offsets.norm(dim=-1)).clamp(-1, 1)).mean().item()
    else:
        elevation = math.radians(elevation_deg)
    # An orthonormal frame (e1, e2, up) around the orbit axis.
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    e1 = torch.linalg.cross(up, helper)
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1)
    angles = torch.linspace(0.0, 2.0 * math.pi, n_frames + 1)[:-1]
    dirs = (math.cos(elevation) * (torch.cos(angles)[:, None] * e1 + torch.sin(angles)[:, None] * e2)
            + math.sin(elevation) * up)
    eyes = center + radius * dirs
    poses = look_at(eyes, center.expand_as(eyes), up)
    n = n_frames
    return Cameras(poses.to(reference.c2w.device), reference.fx[:1].expand(n), reference.fy[:1].expand(n),
                   reference.cx[:1].expand(n), reference.cy[:1].expand(n), reference.width, reference.height)


def spiral_cameras(reference: Cameras, n_frames: int, near: float | None = None, far: float | None = None,
                   focus_depth: float | None = None, rotations: float = 2.0, z_rate: float = 0.5,
                   percentile: float = 90.0) -> Cameras:
    """``n_frames`` cameras on a spiral in front of a forward-facing scene (LLFF's ``render_path_spiral``).

    The path circles the average reference camera (mean position, summed viewing and up directions) in its image
    plane, ``rotations`` times, moving back and forth along its axis ``z_rate`` times as often; the radii along
    its x, y, z are the ``percentile`` of the reference cameras' offsets from it. Every camera looks at the point
    ``focus_depth`` in front of the average camera: given, or from the scene's depth bounds as LLFF chose it, the
    depth whose disparity is 3/4 of the way from ``0.9 * near`` to ``5 * far``.

    Args:
        reference: the capture's cameras (intrinsics of the first, and its ``ndc``, are kept: in NDC scenes the
            path's cameras stay in world space and their rays become NDC rays).
        n_frames: cameras on the path.
        near, far: the smallest and largest depth of the scene content (world units), when ``focus_depth`` is
            not given.

    Returns:
        ``n_frames`` cameras, ``(n_frames, 3, 4)`` poses on the reference's device.
    """
    c2w = reference.c2w.detach().cpu().double()
    center = c2w[:, :3, 3].mean(0)
    z = c2w[:, :3, 2].sum(0)
    z = z / z.norm()
    up = c2w[:, :3, 1].sum(0)
    x = torch.linalg.cross(up, z)
    x = x / x.norm()
    avg = torch.stack([x, torch.linalg.cross(z, x), z], dim=1)  # (3, 3) columns: the average camera's axes
    if focus_depth is None:
        if near is None or far is None:
            raise ValueError("spiral_cameras needs focus_depth, or the scene's near and far depth bounds")
        close, infinity, dt = 0.9 * near, 5.0 * far, 0.75
        focus_depth = 1.0 / ((1.0 - dt) / close + dt / infinity)
    offsets = (c2w[:, :3, 3] - center) @ avg  # positions in the average camera's frame
    radii = torch.quantile(offsets.abs(), percentile / 100.0, dim=0)
    theta = torch.linspace(0.0, 2.0 * math.pi * rotations, n_frames + 1, dtype=torch.float64)[:-1]
    local = torch.stack([torch.cos(theta), -torch.sin(theta), -torch.sin(theta * z_rate)], dim=-1) * radii
    eyes = center + local @ avg.T
    target = center - focus_depth * z
    poses = look_at(eyes, target.expand_as(eyes), (up / up.norm()).expand_as(eyes))
    n = n_frames
    return Cameras(poses.to(reference.c2w), reference.fx[:1].expand(n), reference.fy[:1].expand(n),
                   reference.cx[:1].expand(n), reference.cy[:1].expand(n), reference.width, reference.height,
                   ndc=reference.ndc)


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """Writes uint8 ``(H, W, 3)`` frames as an MP4 (H.264 through imageio-ffmpeg) or, when the suffix is
    ``.gif``, a GIF. Returns the path written."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    stack = np.stack(frames)
    if path.suffix.lower() == ".gif":
        imageio.mimwrite(path, list(stack), format="GIF", duration=1000.0 / fps, loop=0)
        return path
    # H.264 in yuv420p needs even sizes: pad by replicating the last row/column.
    h, w = stack.shape[1:3]
    stack = np.pad(stack, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    imageio.mimwrite(path, list(stack), format="FFMPEG", fps=fps, codec="libx264", quality=8,
                     macro_block_size=1, pixelformat="yuv420p")
    return path
