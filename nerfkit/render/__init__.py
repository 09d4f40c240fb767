"""Volume rendering: scans over packed/batched samples, weights, accumulation."""

from .losses import distortion
from .pack import pack_info, packed_to_padded, padded_to_packed
from .scan import exclusive_prod, exclusive_sum, inclusive_prod, inclusive_sum
from .volrend import (accumulate_along_rays, render_transmittance_from_alpha, render_transmittance_from_density,
                      render_visibility_from_alpha, render_visibility_from_density, render_weight_from_alpha,
                      render_weight_from_density, rendering)

__all__ = [
    "pack_info", "packed_to_padded", "padded_to_packed",
    "inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod",
    "render_transmittance_from_alpha", "render_transmittance_from_density",
    "render_weight_from_alpha", "render_weight_from_density",
    "render_visibility_from_alpha", "render_visibility_from_density",
    "accumulate_along_rays", "rendering",
    "distortion",
]
