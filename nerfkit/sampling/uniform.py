"""Stratified (uniform) samples along rays."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["stratified_edges"]


def stratified_edges(
    near: Tensor,
    far: Tensor,
    n_samples: int,
    stratified: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Edges of ``n_samples`` consecutive intervals covering ``[near, far]`` on every ray.

    Without ``stratified`` the edges are evenly spaced. With it, each interior edge moves uniformly at random
    within half a bin of its even position (and the end edges inwards within half a bin), so over many draws
    every point of ``[near, far]`` is covered while the intervals stay ordered and non-overlapping.

    Args:
        near, far: ``(n_rays,)`` or ``(n_rays, 1)`` bounds of each ray, in world units.
        n_samples: number of intervals per ray (>= 1).
        stratified: jitter the edges (training) or not (evaluation).
        generator: random source for the jitter.

    Returns:
        ``(n_rays, n_samples + 1)`` sorted edges; intervals are ``t_starts = edges[:, :-1]``,
        ``t_ends = edges[:, 1:]``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    near = near.reshape(-1, 1)
    far = far.reshape(-1, 1)
    u = torch.linspace(0.0, 1.0, n_samples + 1, device=near.device, dtype=near.dtype).expand(near.shape[0], -1)
    if stratified:
        half = 0.5 / n_samples
        jitter = (torch.rand(u.shape, device=u.device, dtype=u.dtype, generator=generator) - 0.5) * (2 * half)
        u = (u + jitter).clamp(0.0, 1.0)
    return near + (far - near) * u
