"""Where to sample along rays: ray-box intersection, stratified and inverse-CDF sampling, grid marching."""

from .aabb import ray_aabb_intersect
from .data_specs import RayIntervals, RaySamples
from .grid import occupied_steps, traverse_grids
from .pdf import importance_sampling, merge_edges, sample_pdf, searchsorted
from .uniform import stratified_edges

__all__ = ["ray_aabb_intersect", "stratified_edges", "sample_pdf", "merge_edges",
           "importance_sampling", "searchsorted", "RayIntervals", "RaySamples", "traverse_grids",
           "occupied_steps"]
