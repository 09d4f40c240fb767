"""Methods: short recipes that pick an estimator, a field, a renderer and losses.

A method is an ``nn.Module`` built as ``Method(cfg, near, far, aabb)`` with ``forward(rays_o, rays_d,
render_bkgd, generator) -> outputs`` and ``loss(outputs, target_rgb) -> {"loss", "mse", ...}``; optionally
``before_step(step, generator)`` (returning ``False`` when it changed no buffer, so a multi-process run need not
send rank 0's buffers to the others), ``param_groups()``, ``next_batch_size(batch_size, losses)`` and the
class attributes ``default_lr``, ``default_lr_final``, ``adam_eps``.
"""

from .ngp import InstantNGP, NGPConfig
from .vanilla import VanillaConfig, VanillaNeRF

METHODS = {"vanilla": VanillaNeRF, "ngp": InstantNGP}
"""Method classes by the name ``nerfkit train --method`` takes."""

__all__ = ["VanillaConfig", "VanillaNeRF", "NGPConfig", "InstantNGP", "METHODS"]
