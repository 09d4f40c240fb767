"""Radiance fields: ``(positions, directions) -> (rgb, sigma)``."""

from .vanilla import VanillaFieldConfig, VanillaNeRFField

__all__ = ["VanillaFieldConfig", "VanillaNeRFField"]
