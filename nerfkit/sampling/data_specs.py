"""Containers for samples and intervals along rays, packed or batched (nerfacc 0.5's ``RaySamples`` and
``RayIntervals``).

Batched: ``vals (n_rays, n)`` with every ray holding ``n`` entries. Packed: ``vals (N,)`` grouped by ray, with
``packed_info (n_rays, 2) = [start, count]`` and ``ray_indices (N,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["RaySamples", "RayIntervals"]


@dataclass
class RaySamples:
    """Points along rays.

    Attributes:
        vals: batched ``(n_rays, n_samples)`` or packed ``(N,)`` positions ``t`` (sorted along each ray).
        packed_info: ``(n_rays, 2) = [start, count]`` for packed samples, else ``None``.
        ray_indices: ``(N,)`` int64 ray of each packed sample, else ``None``.
        is_valid: optional boolean mask shaped like ``vals`` of the entries that hold a real sample.
    """

    vals: Tensor
    packed_info: Tensor | None = None
    ray_indices: Tensor | None = None
    is_valid: Tensor | None = None

    @property
    def is_packed(self) -> bool:
        return self.packed_info is not None


@dataclass
class RayIntervals:
    """Interval edges along rays.

    In the batched layout ``vals (n_rays, n_edges)`` are consecutive edges: interval ``i`` of a ray is
    ``[vals[:, i], vals[:, i + 1]]``. In the packed layout ``vals (N,)`` holds each ray's edges in order, and the
    masks say which edges start an interval (``is_left``) and which end one (``is_right``); an edge can be both
    (two touching intervals) so ``t_starts = vals[is_left]`` and ``t_ends = vals[is_right]`` line up.

    Attributes:
        vals: ``(n_rays, n_edges)`` or ``(N,)`` edge positions.
        packed_info: ``(n_rays, 2)`` for packed edges, else ``None``.
        ray_indices: ``(N,)`` int64 ray of each packed edge, else ``None``.
        is_left, is_right: ``(N,)`` booleans for packed edges, else ``None``.
        is_valid: optional boolean mask shaped like ``vals``.
    """

    vals: Tensor
    packed_info: Tensor | None = None
    ray_indices: Tensor | None = None
    is_left: Tensor | None = None
    is_right: Tensor | None = None
    is_valid: Tensor | None = None

    @property
    def is_packed(self) -> bool:
        return self.packed_info is not None
