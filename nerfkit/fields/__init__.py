"""Radiance fields: ``(positions, directions) -> (rgb, sigma)``, plus ``query_density(positions) -> sigma``."""

from .ngp import NGPField, NGPFieldConfig
from .vanilla import VanillaFieldConfig, VanillaNeRFField

__all__ = ["VanillaFieldConfig", "VanillaNeRFField", "NGPFieldConfig", "NGPField"]
