"""Inverse-CDF (importance) sampling of piecewise-constant distributions along rays."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_pdf", "merge_edges"]


def sample_pdf(
    edges: Tensor,
    weights: Tensor,
    n_samples: int,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    padding: float = 1e-5,
) -> Tensor:
    """Draws points from the piecewise-constant density given by ``weights`` over the bins ``edges``.

    The density inside bin ``i`` is proportional to ``weights[i] + padding`` (the padding keeps every bin
    reachable, so rays with all-zero weights sample uniformly). Points come out sorted along each ray.

    Args:
        edges: ``(n_rays, n_bins + 1)`` sorted bin edges.
        weights: ``(n_rays, n_bins)`` non-negative bin weights (e.g. the coarse rendering weights).
        n_samples: number of points per ray.
        stratified: draw one uniform point in each of ``n_samples`` equal CDF strata (training); otherwise the
            strata centres are used, which is deterministic (evaluation).
        generator: random source for the stratified draws.

    Returns:
        ``(n_rays, n_samples)`` sorted sample positions in ``[edges[:, 0], edges[:, -1]]``.
    """
    if edges.shape[:-1] != weights.shape[:-1] or edges.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(f"edges {tuple(edges.shape)} must have one more entry per ray than weights "
                         f"{tuple(weights.shape)}")
    weights = weights.detach() + padding
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1).clamp_max(1.0)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], dim=-1)  # (n_rays, n_bins + 1)

    n_rays = edges.shape[0]
    u = torch.arange(n_samples, device=edges.device, dtype=edges.dtype).expand(n_rays, -1)
    if stratified:
        u = u + torch.rand(u.shape, device=u.device, dtype=u.dtype, generator=generator)
    else:
        u = u + 0.5
    u = (u / n_samples).contiguous()

    # Bin containing each u: cdf[idx - 1] <= u < cdf[idx].
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    t_lo, t_hi = edges.gather(-1, idx - 1), edges.gather(-1, idx)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (t_lo + frac * (t_hi - t_lo)).detach()


def merge_edges(edges: Tensor, points: Tensor) -> Tensor:
    """Sorted union of interval edges ``(n_rays, a)`` and new points ``(n_rays, b)``: ``(n_rays, a + b)`` edges."""
    return torch.sort(torch.cat([edges.detach(), points.detach()], dim=-1), dim=-1).values
