"""Methods: short recipes that pick an estimator, a field, a renderer and losses."""

from .vanilla import VanillaConfig, VanillaNeRF

__all__ = ["VanillaConfig", "VanillaNeRF"]
