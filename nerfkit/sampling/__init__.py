"""Where to sample along rays: ray-box intersection, stratified and inverse-CDF sampling."""

from .aabb import ray_aabb_intersect
from .pdf import merge_edges, sample_pdf
from .uniform import stratified_edges

__all__ = ["ray_aabb_intersect", "stratified_edges", "sample_pdf", "merge_edges"]
