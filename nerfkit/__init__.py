"""nerfkit: Neural Radiance Fields on PyTorch.

The public API. Rendering and sampling functions keep nerfacc's names and semantics, so
``import nerfkit as nerfacc`` works for the functions listed here.
"""

from .cameras import Cameras, look_at, rays_from_pixels
from .encoders import FrequencyEncoder, HashGridEncoder, SHEncoder
from .estimators import OccGridEstimator, PropNetEstimator, get_proposal_requires_grad_fn
from .fields import NGPField, NGPFieldConfig, VanillaFieldConfig, VanillaNeRFField
from .render import (accumulate_along_rays, distortion, exclusive_prod, exclusive_sum, inclusive_prod,
                     inclusive_sum, pack_info, render_transmittance_from_alpha, render_transmittance_from_density,
                     render_visibility_from_alpha, render_visibility_from_density, render_weight_from_alpha,
                     render_weight_from_density, rendering)
from .sampling import (RayIntervals, RaySamples, importance_sampling, merge_edges, ray_aabb_intersect, sample_pdf,
                       searchsorted, stratified_edges, traverse_grids)

__version__ = "0.1.0"

__all__ = [
    # cameras and rays
    "Cameras", "look_at", "rays_from_pixels",
    # encoders and fields
    "FrequencyEncoder", "HashGridEncoder", "SHEncoder", "VanillaFieldConfig", "VanillaNeRFField", "NGPFieldConfig",
    "NGPField",
    # packing and scans
    "pack_info", "inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod",
    # volume rendering (nerfacc names)
    "render_transmittance_from_alpha", "render_transmittance_from_density",
    "render_weight_from_alpha", "render_weight_from_density",
    "render_visibility_from_alpha", "render_visibility_from_density",
    "accumulate_along_rays", "rendering",
    # losses
    "distortion",
    # sampling
    "RayIntervals", "RaySamples", "ray_aabb_intersect", "traverse_grids", "importance_sampling", "searchsorted",
    "stratified_edges", "sample_pdf", "merge_edges",
    # estimators
    "OccGridEstimator", "PropNetEstimator", "get_proposal_requires_grad_fn",
]
