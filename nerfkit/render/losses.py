"""Regularisation losses over samples along rays, with nerfacc 0.5's function names.

Every function accepts either layout:

* batched: per-sample tensors ``(..., n_samples)``, no packing arguments;
* packed: flat per-sample tensors ``(N,)`` grouped by ray (sorted ``ray_indices``), plus ``packed_info (n_rays, 2)``
  or ``ray_indices (N,)`` (+ ``n_rays``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .pack import resolve_packing
from .scan import exclusive_sum

__all__ = ["distortion"]


class _Layout:
    """How flat ``(N,)`` samples group into rays: packed (``packed_info``) or ``n_rays`` rows of ``row_len``."""

    def __init__(self, n_rays: int, packed_info: Tensor | None = None, row_len: int = 0):
        self.n_rays = n_rays
        self.packed_info = packed_info
        self.row_len = row_len
        self.ray_ids: Tensor | None = None
        if packed_info is not None:
            n = int(packed_info[:, 1].sum().item()) if n_rays else 0
            ray_ids = torch.arange(n_rays, device=packed_info.device)
            self.ray_ids = torch.repeat_interleave(ray_ids, packed_info[:, 1], output_size=n)

    def exclusive_sum(self, x: Tensor) -> Tensor:
        """``(N,)`` -> ``(N,)``: sum over the earlier samples of the same ray."""
        if self.packed_info is not None:
            return exclusive_sum(x, self.packed_info)
        return exclusive_sum(x.view(self.n_rays, self.row_len)).reshape(-1)

    def ray_sum(self, x: Tensor) -> Tensor:
        """``(N,)`` -> ``(n_rays,)``: sum over each ray's samples."""
        if self.ray_ids is not None:
            return x.new_zeros(self.n_rays).index_add(0, self.ray_ids, x)
        return x.view(self.n_rays, self.row_len).sum(dim=-1)

    def broadcast(self, r: Tensor) -> Tensor:
        """``(n_rays,)`` -> ``(N,)``: each sample gets its ray's value."""
        if self.ray_ids is not None:
            return r[self.ray_ids]
        return r[:, None].expand(self.n_rays, self.row_len).reshape(-1)


class _Distortion(torch.autograd.Function):
    """Per-ray distortion loss of flat ``(N,)`` samples in O(N), with an explicit O(N) backward."""

    @staticmethod
    def forward(ctx, weights: Tensor, t_starts: Tensor, t_ends: Tensor, layout: _Layout) -> Tensor:
        mids = 0.5 * (t_starts + t_ends)
        deltas = t_ends - t_starts
        # sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i sum_{j<i} w_j (m_i - m_j), since m is sorted along a ray.
        w_before = layout.exclusive_sum(weights)
        wm_before = layout.exclusive_sum(weights * mids)
        per_sample = 2.0 * weights * (mids * w_before - wm_before) + weights.square() * deltas / 3.0
        ctx.layout = layout
        ctx.save_for_backward(weights, mids, deltas, w_before, wm_before)
        return layout.ray_sum(per_sample)

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        weights, mids, deltas, w_before, wm_before = ctx.saved_tensors
        layout: _Layout = ctx.layout
        grad = layout.broadcast(grad_loss)  # (N,)
        wm = weights * mids
        w_after = layout.broadcast(layout.ray_sum(weights)) - w_before - weights
        wm_after = layout.broadcast(layout.ray_sum(wm)) - wm_before - wm
        w_diff = w_before - w_after  # sum_j w_j sign(m_i - m_j)
        grad_w = grad_starts = grad_ends = None
        if ctx.needs_input_grad[0]:
            # 2 sum_j w_j |m_i - m_j| + (2/3) w_i d_i
            grad_w = grad * (2.0 * (mids * w_diff - (wm_before - wm_after)) + (2.0 / 3.0) * weights * deltas)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_mid = grad * 2.0 * weights * w_diff
            grad_delta = grad * weights.square() / 3.0
            # m = (s + e) / 2, d = e - s
            grad_starts = 0.5 * grad_mid - grad_delta if ctx.needs_input_grad[1] else None
            grad_ends = 0.5 * grad_mid + grad_delta if ctx.needs_input_grad[2] else None
        return grad_w, grad_starts, grad_ends, None


def distortion(
    weights: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    packed_info: Tensor | None = None,
) -> Tensor:
    """Distortion regularisation of Mip-NeRF 360, per ray.

    With midpoints ``m_i = (t_starts_i + t_ends_i) / 2`` and widths ``d_i = t_ends_i - t_starts_i``::

        L = sum_{i,j} w_i w_j |m_i - m_j| + (1/3) sum_i w_i^2 d_i

    computed in O(N) from prefix sums (the intervals of a ray must be sorted), with an O(N) backward to
    ``weights``, ``t_starts`` and ``t_ends``.

    Args:
        weights, t_starts, t_ends: batched ``(..., n_samples)`` or packed ``(N,)``, all the same shape.
        ray_indices: ``(N,)`` sorted ray of each packed sample (with ``n_rays``; inferred from the largest index if
            ``None``), or ``None``.
        n_rays: number of rays for packed input.
        packed_info: ``(n_rays, 2) = [start, count]`` for packed input, instead of ``ray_indices``.

    Returns:
        The loss per ray: ``(..., 1)`` batched or ``(n_rays, 1)`` packed, as nerfacc 0.5 (0 for rays without
        samples).
    """
    if t_starts.shape != weights.shape:
        raise ValueError(f"t_starts must have the shape of weights {tuple(weights.shape)}, "
                         f"got {tuple(t_starts.shape)}")
    if t_ends.shape != weights.shape:
        raise ValueError(f"t_ends must have the shape of weights {tuple(weights.shape)}, got {tuple(t_ends.shape)}")
    packed = packed_info is not None or ray_indices is not None
    if packed:
        if weights.ndim != 1:
            raise ValueError(f"packed weights must be 1-D (N,), got shape {tuple(weights.shape)}")
        if packed_info is not None and (packed_info.ndim != 2 or packed_info.shape[1] != 2):
            raise ValueError(f"packed_info must have shape (n_rays, 2), got {tuple(packed_info.shape)}")
        source = "packed_info" if packed_info is not None else "ray_indices"
        packed_info = resolve_packing(weights.shape[0], packed_info, ray_indices, n_rays)
        if n_rays is not None and packed_info.shape[0] != n_rays:
            raise ValueError(f"{source} describes {packed_info.shape[0]} rays but n_rays is {n_rays}")
        layout = _Layout(packed_info.shape[0], packed_info=packed_info)
        if layout.ray_ids.shape[0] != weights.shape[0]:
            raise ValueError(f"packed_info counts sum to {layout.ray_ids.shape[0]} samples, "
                             f"but weights has {weights.shape[0]}")
        return _Distortion.apply(weights, t_starts, t_ends, layout)[:, None]
    if weights.ndim == 0:
        raise ValueError("batched weights must have shape (..., n_samples), got a 0-d tensor")
    if n_rays is not None:
        raise ValueError("n_rays is only for packed input: pass ray_indices or packed_info as well")
    lead, row_len = weights.shape[:-1], weights.shape[-1]
    layout = _Layout(lead.numel(), row_len=row_len)
    loss = _Distortion.apply(weights.reshape(-1), t_starts.reshape(-1), t_ends.reshape(-1), layout)
    return loss.view(*lead, 1)
