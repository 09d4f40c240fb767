"""Volume rendering along rays, with nerfacc 0.5's function names and semantics.

Every function accepts either layout:

* batched: per-sample tensors ``(n_rays, n_samples)`` (any leading shape ``(...)``), no packing arguments;
* packed: flat per-sample tensors ``(N,)`` plus ``packed_info (n_rays, 2)`` or ``ray_indices (N,)`` (+ ``n_rays``).

Intervals are ``[t_starts, t_ends]`` in world units; densities ``sigmas`` are per unit length.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..kernels import use_triton
from .pack import resolve_packing
from .scan import exclusive_prod, exclusive_sum

__all__ = [
    "render_transmittance_from_alpha",
    "render_transmittance_from_density",
    "render_weight_from_alpha",
    "render_weight_from_density",
    "render_visibility_from_alpha",
    "render_visibility_from_density",
    "accumulate_along_rays",
    "rendering",
]


def render_transmittance_from_density(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Transmittance ``T_i = exp(-sum_{j<i} sigma_j * dt_j)`` and opacity ``alpha_i = 1 - exp(-sigma_i * dt_i)``.

    Args:
        t_starts, t_ends, sigmas: ``(n_rays, n_samples)`` batched or ``(N,)`` packed.
        packed_info / ray_indices / n_rays: describe packed input; leave ``None`` for batched.
        prefix_trans: optional transmittance already accumulated before these samples, shaped like ``sigmas``.

    Returns:
        ``(trans, alphas)``, each shaped like ``sigmas``.
    """
    fused = _fused_weight_from_density(t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays, prefix_trans)
    if fused is not None:
        return fused[1], fused[2]
    packed_info = resolve_packing(sigmas.numel(), packed_info, ray_indices, n_rays)
    sigmas_dt = sigmas * (t_ends - t_starts)
    alphas = 1.0 - torch.exp(-sigmas_dt)
    trans = torch.exp(-exclusive_sum(sigmas_dt, packed_info))
    if prefix_trans is not None:
        trans = trans * prefix_trans
    return trans, alphas


def render_transmittance_from_alpha(
    alphas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> Tensor:
    """Transmittance ``T_i = prod_{j<i} (1 - alpha_j)``.

    Args:
        alphas: ``(n_rays, n_samples)`` batched or ``(N,)`` packed opacities in ``[0, 1]``.
    Returns:
        ``trans`` shaped like ``alphas``.
    """
    packed_info = resolve_packing(alphas.numel(), packed_info, ray_indices, n_rays)
    trans = exclusive_prod(1.0 - alphas, packed_info)
    if prefix_trans is not None:
        trans = trans * prefix_trans
    return trans


def render_weight_from_density(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Rendering weights ``w_i = T_i * alpha_i`` from densities.

    Returns:
        ``(weights, trans, alphas)``, each shaped like ``sigmas``.
    """
    fused = _fused_weight_from_density(t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays, prefix_trans)
    if fused is not None:
        return fused
    trans, alphas = render_transmittance_from_density(
        t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays, prefix_trans)
    return trans * alphas, trans, alphas


def _fused_weight_from_density(t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays, prefix_trans):
    """``(weights, trans, alphas)`` from the fused Triton kernel (:mod:`nerfkit.kernels.volrend_triton`) for packed
    input when :func:`nerfkit.kernels.use_triton` selects it; ``None`` means: take the reference path."""
    if (packed_info is None and ray_indices is None) or not use_triton(t_starts, t_ends, sigmas):
        return None
    from ..kernels.volrend_triton import weights_from_density_packed

    packed_info = resolve_packing(sigmas.numel(), packed_info, ray_indices, n_rays)
    weights, trans, alphas = weights_from_density_packed(t_starts, t_ends, sigmas, packed_info)
    if prefix_trans is not None:
        trans, weights = trans * prefix_trans, weights * prefix_trans
    return weights, trans, alphas


def render_weight_from_alpha(
    alphas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Rendering weights ``w_i = T_i * alpha_i`` from opacities.

    Returns:
        ``(weights, trans)``, each shaped like ``alphas``.
    """
    trans = render_transmittance_from_alpha(alphas, packed_info, ray_indices, n_rays, prefix_trans)
    return trans * alphas, trans


@torch.no_grad()
def render_visibility_from_alpha(
    alphas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    prefix_trans: Tensor | None = None,
) -> Tensor:
    """Which samples contribute: transmittance still ``>= early_stop_eps`` and ``alpha >= alpha_thre``.

    Returns:
        a boolean mask shaped like ``alphas``.
    """
    trans = render_transmittance_from_alpha(alphas, packed_info, ray_indices, n_rays, prefix_trans)
    return _visibility(trans, alphas, early_stop_eps, alpha_thre)


@torch.no_grad()
def render_visibility_from_density(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    prefix_trans: Tensor | None = None,
) -> Tensor:
    """:func:`render_visibility_from_alpha` for densities. Returns a boolean mask shaped like ``sigmas``."""
    trans, alphas = render_transmittance_from_density(
        t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays, prefix_trans)
    return _visibility(trans, alphas, early_stop_eps, alpha_thre)


def _visibility(trans: Tensor, alphas: Tensor, early_stop_eps: float, alpha_thre: float) -> Tensor:
    vis = trans >= early_stop_eps
    if alpha_thre > 0:
        vis = vis & (alphas >= alpha_thre)
    return vis


def accumulate_along_rays(
    weights: Tensor,
    values: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
) -> Tensor:
    """Weighted sum of per-sample values along each ray.

    Args:
        weights: batched ``(..., n_samples)`` or packed ``(N,)``.
        values: batched ``(..., n_samples, C)`` or packed ``(N, C)``; ``None`` sums the weights alone
            (the opacity).
        ray_indices, n_rays: required for packed input.

    Returns:
        ``(..., C)`` batched or ``(n_rays, C)`` packed (``C = 1`` when ``values`` is ``None``).
    """
    src = weights[..., None] if values is None else weights[..., None] * values
    if ray_indices is None:
        if weights.ndim == 1 and n_rays is not None:
            raise ValueError("packed input to accumulate_along_rays needs ray_indices")
        return src.sum(dim=-2)
    if n_rays is None:
        raise ValueError("accumulate_along_rays needs n_rays with ray_indices")
    out = src.new_zeros((n_rays, src.shape[-1]))
    return out.index_add(0, ray_indices.long(), src)


def rendering(
    # ray marching results
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    # radiance field
    rgb_sigma_fn: Callable[..., tuple[Tensor, Tensor]] | None = None,
    rgb_alpha_fn: Callable[..., tuple[Tensor, Tensor]] | None = None,
    # rendering options
    render_bkgd: Tensor | None = None,
    expected_depths: bool = True,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """Renders colour, opacity and depth from samples and a radiance field.

    Args:
        t_starts, t_ends: ``(n_rays, n_samples)`` batched or ``(N,)`` packed intervals.
        ray_indices, n_rays: for packed input (``None`` for batched).
        rgb_sigma_fn: ``f(t_starts, t_ends, ray_indices) -> (rgbs (..., 3), sigmas (...))``.
        rgb_alpha_fn: ``f(t_starts, t_ends, ray_indices) -> (rgbs (..., 3), alphas (...))``; give exactly one.
        render_bkgd: ``(3,)`` or ``(n_rays, 3)`` background colour composited behind the samples.
        expected_depths: divide the accumulated depth by the opacity (the expected depth of the visible part).

    Returns:
        ``colors (n_rays, 3)``, ``opacities (n_rays, 1)``, ``depths (n_rays, 1)`` and ``extras`` with the per-sample
        ``weights``, ``alphas``, ``trans``, ``rgbs`` and (density fields) ``sigmas``.
    """
    if (rgb_sigma_fn is None) == (rgb_alpha_fn is None):
        raise ValueError("rendering needs exactly one of rgb_sigma_fn and rgb_alpha_fn")
    if ray_indices is not None and n_rays is None:
        raise ValueError("rendering needs n_rays with ray_indices")
    extras: dict[str, Tensor] = {}
    if rgb_sigma_fn is not None:
        rgbs, sigmas = rgb_sigma_fn(t_starts, t_ends, ray_indices)
        if sigmas.shape != t_starts.shape:
            raise ValueError(f"rgb_sigma_fn returned sigmas of shape {tuple(sigmas.shape)}, "
                             f"expected {tuple(t_starts.shape)}")
        weights, trans, alphas = render_weight_from_density(
            t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=n_rays)
        extras["sigmas"] = sigmas
    else:
        rgbs, alphas = rgb_alpha_fn(t_starts, t_ends, ray_indices)
        if alphas.shape != t_starts.shape:
            raise ValueError(f"rgb_alpha_fn returned alphas of shape {tuple(alphas.shape)}, "
                             f"expected {tuple(t_starts.shape)}")
        weights, trans = render_weight_from_alpha(alphas, ray_indices=ray_indices, n_rays=n_rays)
    if rgbs.shape[:-1] != t_starts.shape:
        raise ValueError(f"the field returned rgbs of shape {tuple(rgbs.shape)}, expected "
                         f"{tuple(t_starts.shape) + (rgbs.shape[-1],)}")
    extras.update(weights=weights, alphas=alphas, trans=trans, rgbs=rgbs)

    colors = accumulate_along_rays(weights, rgbs, ray_indices, n_rays)
    opacities = accumulate_along_rays(weights, None, ray_indices, n_rays)
    depths = accumulate_along_rays(weights, ((t_starts + t_ends) / 2.0)[..., None], ray_indices, n_rays)
    if expected_depths:
        depths = depths / opacities.clamp_min(torch.finfo(depths.dtype).eps)
    if render_bkgd is not None:
        colors = colors + render_bkgd * (1.0 - opacities)
    return colors, opacities, depths, extras
